import AgentJobsCore

/// The embedded consumer's lifecycle, bounded buffer, waiting reader, owned partitions and
/// commit bookkeeping, as a value.
///
/// Generic over `Waiter` (the suspended reader) so that tests can drive it with plain values.
/// It performs no I/O; ``SQLiteMessageConsumer`` holds it behind a lock and acts on what it
/// returns. Only the consumer's run loop changes what is owned, so a fetch planned from
/// ``fetchPlan`` is still valid when its result is handed to ``fetched(_:)``.
struct SQLiteConsumerStateMachine<Waiter> {
    enum Lifecycle: Equatable {
        case initial
        case running
        /// Shutdown began: nothing more is handed out.
        case closing
        /// `run()` returned: commits fail.
        case closed
    }

    enum NextAction {
        /// Return these messages; wake the fetch loop when `wakeFetcher` (the buffer had been full).
        case messages([IncomingMessage], wakeFetcher: Bool)
        /// The waiter was stored; it is resumed later.
        case suspended
        /// The sequence is over.
        case finished
        /// This call fails (another reader is waiting).
        case fail(MessageLogError)
    }

    let capacity: Int
    private(set) var lifecycle: Lifecycle = .initial
    /// Owned partitions and the next offset to fetch from each.
    private(set) var positions: [TopicPartition: Int64] = [:]
    /// The lease generation while this member owns its group; `nil` for manual assignment or a
    /// standby member.
    private(set) var generation: Int64?
    /// The last fetch read every owned partition to its end (in that fetch's snapshot).
    private(set) var caughtUp = false
    private var buffer: ConsumerBuffer<Waiter>

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        self.buffer = ConsumerBuffer(capacity: capacity)
    }

    var bufferedCount: Int { buffer.count }

    var isRunning: Bool { lifecycle == .running }

    mutating func start() -> Bool {
        guard lifecycle == .initial else { return false }
        lifecycle = .running
        return true
    }

    // MARK: Fetch loop

    /// Starts an ownership: these partitions, read from these positions.
    mutating func assign(_ positions: [TopicPartition: Int64], generation: Int64?) {
        self.positions = positions
        self.generation = generation
        caughtUp = false
    }

    /// The group lease was lost: drop everything owned and buffered (the new owner re-reads it).
    mutating func revokeAll() {
        positions = [:]
        generation = nil
        caughtUp = false
        buffer.removeAll()
    }

    /// What to fetch next: the owned positions and how many messages fit in the buffer.
    var fetchPlan: (positions: [TopicPartition: Int64], room: Int) {
        guard lifecycle == .running else { return ([:], 0) }
        return (positions, buffer.room)
    }

    /// A fetch returned. Returns the waiting reader with its batch, if one waits.
    mutating func fetched(_ result: SQLiteMessageLog.FetchResult) -> (Waiter, [IncomingMessage])? {
        guard lifecycle == .running else { return nil }
        for (topicPartition, next) in result.advancedTo {
            guard let current = positions[topicPartition] else { continue }
            positions[topicPartition] = max(current, next)
        }
        caughtUp = result.caughtUp && !positions.isEmpty
        return buffer.deliver(result.messages)
    }

    // MARK: Reader

    /// The reader asks for at most `maxCount` messages; `waiter` is stored when none is ready.
    mutating func next(upTo maxCount: Int = 1, waiter newWaiter: Waiter) -> NextAction {
        if lifecycle == .closing || lifecycle == .closed { return .finished }
        switch buffer.take(upTo: maxCount, waiter: newWaiter) {
        case .messages(let messages, let wasFull):
            return .messages(messages, wakeFetcher: wasFull)
        case .suspended:
            return .suspended
        case .busy:
            return .fail(MessageLogError(.conflict, "two tasks iterate the consumer's messages at once"))
        }
    }

    /// The messages buffered, at most `maxCount`, without waiting; `wakeFetcher` as for ``next(upTo:waiter:)``.
    mutating func available(upTo maxCount: Int) -> (messages: [IncomingMessage], wakeFetcher: Bool) {
        guard lifecycle == .running else { return ([], false) }
        let (messages, wasFull) = buffer.available(upTo: maxCount)
        return (messages, wasFull)
    }

    /// The waiting reader's task was cancelled. Returns it if it is still waiting.
    mutating func cancelWaiter() -> Waiter? {
        buffer.removeWaiter()
    }

    // MARK: Commits

    /// Turns handled positions into offsets to commit (next offset to read per partition),
    /// keeping only owned partitions and the furthest position of each.
    /// - Throws: `unavailable` once the consumer has stopped.
    func offsetsToCommit(_ handled: [MessagePosition]) throws(MessageLogError) -> [TopicPartition: Int64] {
        if lifecycle == .closed {
            throw MessageLogError(.unavailable, "the consumer has stopped; positions were not committed")
        }
        var offsets: [TopicPartition: Int64] = [:]
        for position in handled where positions[position.topicPartition] != nil {
            offsets[position.topicPartition] = max(offsets[position.topicPartition] ?? 0, position.offset + 1)
        }
        return offsets
    }

    // MARK: Shutdown

    /// Shutdown requested: stop handing out messages. Returns the reader to finish, if any.
    mutating func close() -> Waiter? {
        if lifecycle == .initial || lifecycle == .running {
            lifecycle = .closing
        }
        buffer.removeAll()
        return buffer.removeWaiter()
    }

    /// `run()` is returning.
    mutating func closed() {
        lifecycle = .closed
        positions = [:]
        generation = nil
    }
}
