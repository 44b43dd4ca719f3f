import AgentJobsCore
import Dispatch
import Logging
import ServiceLifecycle

/// A Kafka consumer with explicit commits, reading by consumer group or by manual assignment.
///
/// - `.group(id:topics:)`: joins the group; partitions move between members on rebalances. On
///   a revoke, buffered messages of the revoked partitions are dropped and their positions can
///   no longer be committed by this member (the new owner re-reads from the last commit).
/// - `.assignment(groupID:partitions:keyFilter:)`: `rd_kafka_assign` with no group membership
///   (no rebalances, ever); reading resumes from the offsets committed under `groupID`.
///
/// It is a `Service`: `run()` polls librdkafka on a dedicated thread and feeds ``messages``
/// through a buffer of ``KafkaConsumerConfiguration/bufferCapacity`` messages; when the buffer
/// is full, polling waits for the reader (back-pressure). While waiting, rebalance callbacks
/// are served only once the reader takes a message, so a reader stuck for longer than
/// `max.poll.interval.ms` leaves the group, as Kafka intends. On graceful shutdown or
/// cancellation, ``messages`` ends, buffered messages are dropped (they were not committed, so
/// they are read again later), the group is left (`rd_kafka_consumer_close`) and the handle is
/// destroyed. Commits issued before shutdown began complete first.
public final class KafkaConsumer: MessageConsumer, Service, Sendable {
    /// The messages, in partition order; see ``KafkaConsumerMessages``.
    public let messages: KafkaConsumerMessages

    private let configuration: KafkaConsumerConfiguration
    private let logger: Logger
    private let client: RDKafkaClient
    private let shared: ConsumerShared
    /// Serialises commits and the final close, off the cooperative pool.
    private let commitQueue: DispatchQueue

    /// Creates the consumer and its librdkafka handle (no network I/O until `run()`).
    /// - Parameters:
    ///   - configuration: The consumer configuration; validated here.
    ///   - logger: Receives lifecycle, rebalance and librdkafka log lines.
    /// - Throws: ``KafkaError`` (`invalidConfiguration`, `unsupportedLibrdkafkaVersion`,
    ///   `clientCreationFailed`).
    public init(configuration: KafkaConsumerConfiguration, logger: Logger) throws(KafkaError) {
        let properties = try configuration.librdkafkaProperties()
        var logger = logger
        logger[metadataKey: "kafka.group"] = "\(configuration.subscription.groupID)"
        let keyFilter: [UInt8]?
        let isGroup: Bool
        switch configuration.subscription {
        case .group:
            keyFilter = nil
            isGroup = true
        case .assignment(_, _, let filter):
            keyFilter = filter
            isGroup = false
        }
        let shared = ConsumerShared(capacity: configuration.bufferCapacity, keyFilter: keyFilter)
        let callbacks = RDKafkaCallbacks(
            logger: logger,
            onRebalance: { event in
                shared.state.withLock { state in
                    switch event {
                    case .assigned(let partitions): state.assigned(partitions)
                    case .revoked(let partitions, _): state.revoked(partitions)
                    }
                }
            },
            onError: { [logger] error, fatal in
                if fatal {
                    logger.critical("Kafka consumer hit a fatal error: \(error)")
                } else {
                    logger.warning("Kafka consumer error: \(error)")
                }
            }
        )
        self.client = try RDKafkaClient.make(
            kind: .consumer(groupRebalanceCallback: isGroup),
            properties: properties,
            callbacks: callbacks
        )
        self.configuration = configuration
        self.logger = logger
        self.shared = shared
        self.messages = KafkaConsumerMessages(shared: shared)
        self.commitQueue = DispatchQueue(label: "agentjobs.kafka.consumer.commit")
    }

    /// The partitions this consumer currently owns.
    public var assignment: Set<TopicPartition> {
        shared.state.withLock { Set($0.assignment.keys) }
    }

    /// The consumer's group (or the group id it commits under with an assignment).
    public var groupID: String { configuration.subscription.groupID }

    /// Messages not yet committed in each partition this consumer owns: the partition's end as last
    /// fetched minus the offset committed during this ownership, or, before the first commit, the
    /// next offset to fetch. No broker call: cheap enough for every scrape.
    public func lag() -> [TopicPartition: Int64] {
        let committed = shared.state.withLock { state in state.assignment.mapValues(\.committed) }
        return client.ifAlive { client.lag(committed) } ?? [:]
    }

    /// Whether every owned partition's messages were received up to its end as last fetched
    /// (no broker call). A partition no message was received from yet cannot tell (its position
    /// before the first message is not known here): false then.
    public var hasCaughtUp: Bool? {
        let next = shared.state.withLock { state in state.assignment.mapValues(\.next) }
        guard !next.isEmpty, next.values.allSatisfy({ $0 != nil }) else { return false }
        guard let lag = client.ifAlive({ client.lag(next) }), lag.count == next.count else { return false }
        return lag.values.allSatisfy { $0 == 0 }
    }

    public func nextBatch(maxCount: Int) async throws -> [IncomingMessage]? {
        try await shared.next(upTo: maxCount)
    }

    public func bufferedBatch(maxCount: Int) -> [IncomingMessage] {
        shared.available(upTo: maxCount)
    }

    /// Subscribes or assigns, then polls until graceful shutdown or cancellation; then leaves
    /// the group and closes.
    /// - Throws: ``KafkaError``: `alreadyRunning` on a second call, `subscriptionFailed` when the
    ///   subscription or assignment was refused, `fatal` on a fatal librdkafka error.
    public func run() async throws {
        try shared.state.withLock { $0.start() }.get()
        logger.info(
            "Kafka consumer starting",
            metadata: [
                "librdkafka.version": "\(KafkaRuntime.librdkafkaVersion)",
                "kafka.subscription": "\(configuration.subscription)",
            ]
        )
        let client = self.client
        let shared = self.shared
        let subscription = configuration.subscription
        let logger = self.logger
        let pollError: KafkaError? = await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await Blocking.onDedicatedThread(name: "agentjobs-kafka-consumer") {
                    pollLoop(client: client, shared: shared, subscription: subscription, logger: logger)
                }
            } onGracefulShutdown: {
                shared.close()
            }
        } onCancel: {
            shared.close()
        }

        // On the commit queue: commits requested before shutdown finish first, and commits
        // requested afterwards see `closed`.
        do {
            try await Blocking.on(commitQueue) { () throws(KafkaError) in
                defer { shared.state.withLock { $0.closed() } }
                try client.closeConsumer()
            }
        } catch {
            logger.warning("closing the Kafka consumer failed: \(error)")
        }
        await Blocking.onDedicatedThread(name: "agentjobs-kafka-consumer-destroy") {
            client.destroy()
        }
        logger.info("Kafka consumer stopped")
        if let pollError {
            throw pollError
        }
    }

    /// Commits that every message up to and including each position has been handled. See
    /// `MessageConsumer.commit(_:)` for the monotonic and ownership rules.
    /// - Parameter positions: Positions of handled messages.
    /// - Throws: ``KafkaError``: `commitFailed` (nothing was committed) or `consumerClosed`.
    public func commit(_ positions: [MessagePosition]) async throws {
        try await commitPositions(positions)
    }

    /// ``commit(_:)`` with the concrete error type; returns the offsets actually committed
    /// (next offset to read per partition), after skipping stale and covered positions.
    @discardableResult
    public func commitPositions(_ positions: [MessagePosition]) async throws(KafkaError) -> [TopicPartition: Int64] {
        let client = self.client
        let shared = self.shared
        let logger = self.logger
        return try await Blocking.on(commitQueue) { () throws(KafkaError) -> [TopicPartition: Int64] in
            let offsets = try shared.state.withLock { state throws(KafkaError) in try state.offsetsToCommit(positions) }
            if offsets.isEmpty {
                return [:]
            }
            try client.commit(offsets)
            shared.state.withLock { $0.committed(offsets) }
            logger.trace("committed offsets", metadata: ["kafka.offsets": "\(offsets.map { "\($0.key)=\($0.value)" })"])
            return offsets
        }
    }
}

/// The body of the consumer's dedicated poll thread. Returns the error that ended it, if any.
private func pollLoop(
    client: RDKafkaClient,
    shared: ConsumerShared,
    subscription: ConsumerSubscription,
    logger: Logger
) -> KafkaError? {
    do throws(KafkaError) {
        switch subscription {
        case .group(_, let topics):
            try client.subscribe(topics: topics)
        case .assignment(_, let partitions, _):
            shared.state.withLock { $0.assigned(partitions) }
            try client.assign(partitions)
        }
    } catch {
        logger.error("Kafka consumer could not subscribe: \(error)")
        shared.fail(error)
        return error
    }
    while true {
        switch shared.state.withLock({ $0.pollAction }) {
        case .stop:
            return nil
        case .waitForReader:
            _ = shared.state.wait(until: { $0.pollAction != .waitForReader }, timeout: 0.1)
        case .poll:
            switch client.consumerPoll(timeoutMs: 100) {
            case nil:
                continue
            case .message(let message):
                if case .resume(let waiter, let messages) = shared.state.withLock({ $0.received(message) }) {
                    waiter.resume(returning: messages)
                }
            case .error(let error, let fatal):
                if fatal {
                    logger.critical("Kafka consumer stops on a fatal error: \(error)")
                    shared.fail(error)
                    return error
                }
                // Broker down, unknown topic, …: librdkafka keeps retrying.
                logger.warning("Kafka consumer: \(error)")
            }
        }
    }
}

/// State shared between the consumer, its poll thread, librdkafka's callbacks and readers.
final class ConsumerShared: Sendable {
    typealias Waiter = CheckedContinuation<[IncomingMessage]?, any Error>

    let state: ConditionLocked<ConsumerStateMachine<Waiter>>

    init(capacity: Int, keyFilter: [UInt8]?) {
        state = ConditionLocked(ConsumerStateMachine(capacity: capacity, keyFilter: keyFilter))
    }

    /// Ends the message sequence and stops polling.
    func close() {
        let waiter = state.withLock { $0.close() }
        waiter?.resume(returning: nil)
        state.broadcast()
    }

    /// Ends the message sequence with `error` and stops polling.
    func fail(_ error: KafkaError) {
        let waiter = state.withLock { $0.failed(error) }
        waiter?.resume(throwing: error)
        state.broadcast()
    }

    /// At most `maxCount` messages, waiting for the first; `nil` once the consumer shut down.
    func next(upTo maxCount: Int) async throws -> [IncomingMessage]? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: Waiter) in
                let action = state.withLock { state -> ConsumerStateMachine<Waiter>.NextAction? in
                    // Checked under the lock: either the cancel handler already ran (and we see
                    // the flag here), or it runs later and finds the stored waiter.
                    Task.isCancelled ? nil : state.next(upTo: maxCount, waiter: continuation)
                }
                switch action {
                case nil:
                    continuation.resume(throwing: CancellationError())
                case .messages(let messages, let wakePoller):
                    continuation.resume(returning: messages)
                    if wakePoller { state.broadcast() }
                case .suspended:
                    break
                case .finished(nil):
                    continuation.resume(returning: nil)
                case .finished(let error?):
                    continuation.resume(throwing: error)
                case .fail(let error):
                    continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            state.withLock { $0.cancelWaiter() }?.resume(throwing: CancellationError())
        }
    }

    /// The messages buffered, at most `maxCount`, without waiting.
    func available(upTo maxCount: Int) -> [IncomingMessage] {
        let (messages, wakePoller) = state.withLock { $0.available(upTo: maxCount) }
        if wakePoller { state.broadcast() }
        return messages
    }
}

/// The messages of a ``KafkaConsumer``: an `AsyncSequence` fed through a bounded buffer.
///
/// Only one task may iterate at a time (a second concurrent `next()` throws
/// ``KafkaError/Code/concurrentIteration``). Cancelling the iterating task makes `next()` throw
/// `CancellationError` without losing buffered messages. The sequence ends (returns `nil`) when
/// the consumer shuts down, or throws when it stopped on a fatal error. Messages only arrive
/// while ``KafkaConsumer/run()`` is running.
public struct KafkaConsumerMessages: AsyncSequence, Sendable {
    public typealias Element = IncomingMessage
    public typealias Failure = any Error

    let shared: ConsumerShared

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(shared: shared)
    }

    /// The iterator of ``KafkaConsumerMessages``.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let shared: ConsumerShared

        /// The next message, or `nil` once the consumer shut down.
        public mutating func next() async throws -> IncomingMessage? {
            try await shared.next(upTo: 1)?.first
        }
    }
}

extension KafkaConsumer {
    /// Messages waiting in the buffer (tests check the bound).
    var bufferedCountForTesting: Int {
        shared.state.withLock { $0.bufferedCount }
    }
}
