/// The producer's lifecycle and its table of messages awaiting a delivery report, as a value.
///
/// Generic over `Sink` (what is told about a delivery) so that tests can drive it with plain
/// values. It performs no I/O; ``KafkaProducer`` holds it behind a lock and acts on what it
/// returns.
struct ProducerStateMachine<Sink> {
    enum Lifecycle: Equatable {
        /// Created; sends are accepted and complete once `run()` polls.
        case initial
        /// `run()` is polling.
        case running
        /// Shutdown began: no new sends; in-flight ones are being flushed.
        case shuttingDown
        /// The handle is (about to be) destroyed; nothing is in flight any more.
        case finished
    }

    enum RegisterAction {
        /// Enqueue the message with this per-message id.
        case produce(id: UInt64)
        /// Do not enqueue; fail the send with this error.
        case fail(KafkaError)
    }

    private(set) var lifecycle: Lifecycle = .initial
    /// The fatal error of the current handle, until it is replaced (or for good once shutdown began).
    private(set) var fatalError: KafkaError?
    /// A delivery timed out, or librdkafka raised a fatal error, so the handle's idempotence state
    /// (producer id, epoch, sequence numbers) may no longer match the cluster's: replace the handle
    /// once nothing is in flight.
    private(set) var handleReplacementWanted = false
    private var nextID: UInt64 = 1
    private var pending: [UInt64: Sink] = [:]

    /// Messages enqueued and not yet reported.
    var inFlightCount: Int { pending.count }

    /// `run()` started.
    mutating func start() -> Result<Void, KafkaError> {
        guard lifecycle == .initial else {
            return .failure(KafkaError(code: .alreadyRunning, message: "KafkaProducer.run() was called twice"))
        }
        lifecycle = .running
        return .success(())
    }

    /// A send wants to enqueue a message.
    mutating func register(_ sink: Sink) -> RegisterAction {
        if let fatalError {
            return .fail(fatalError)
        }
        switch lifecycle {
        case .initial, .running:
            let id = nextID
            nextID &+= 1
            pending[id] = sink
            return .produce(id: id)
        case .shuttingDown, .finished:
            return .fail(
                KafkaError(code: .producerShutDown, message: "the producer is shutting down; the message was not sent"))
        }
    }

    /// librdkafka refused to enqueue message `id`; no delivery report will follow.
    mutating func enqueueFailed(id: UInt64) -> Sink? {
        pending.removeValue(forKey: id)
    }

    /// The delivery report of message `id` arrived. Returns whom to tell (nil for an unknown id).
    mutating func delivered(id: UInt64, timedOut: Bool = false) -> Sink? {
        if timedOut, lifecycle == .initial || lifecycle == .running {
            handleReplacementWanted = true
        }
        return pending.removeValue(forKey: id)
    }

    /// Whether the poll loop should replace the librdkafka handle now: one was wanted and no
    /// message is in flight (so no delivery report of the old handle can be lost).
    var shouldReplaceHandle: Bool {
        handleReplacementWanted && pending.isEmpty && lifecycle == .running
    }

    /// Whether the poll loop should first fail what is still in flight (purge the old handle): after
    /// a fatal error librdkafka delivers none of it, and the handle is replaced only once it is empty.
    var shouldPurgeBeforeReplacing: Bool {
        handleReplacementWanted && fatalError != nil && !pending.isEmpty && lifecycle == .running
    }

    /// A replacement handle could not be created: after a timeout the old one is kept; after a
    /// fatal error it is useless, so the replacement is tried again.
    mutating func replacementFailed() {
        if fatalError == nil {
            handleReplacementWanted = false
        }
    }

    /// The handle was replaced: sends work again.
    mutating func handleReplaced() {
        handleReplacementWanted = false
        fatalError = nil
    }

    /// librdkafka raised a fatal error (an idempotent producer whose producer id or sequence the
    /// broker no longer accepts, for example after the broker lost its state): sends fail with it
    /// until the poll loop has replaced the handle, which it does once nothing is in flight.
    mutating func fatal(_ error: KafkaError) {
        if fatalError == nil {
            fatalError = error
        }
        if lifecycle == .initial || lifecycle == .running {
            handleReplacementWanted = true
        }
    }

    /// Shutdown was requested. Returns whether there was a running producer to flush.
    mutating func beginShutdown() -> Bool {
        switch lifecycle {
        case .initial, .running:
            lifecycle = .shuttingDown
            return true
        case .shuttingDown, .finished:
            return false
        }
    }

    /// The flush (and purge) is over: returns every message still without a report, to fail.
    mutating func finish() -> [Sink] {
        lifecycle = .finished
        let leftovers = pending.sorted { $0.key < $1.key }.map(\.value)
        pending.removeAll()
        return leftovers
    }
}
