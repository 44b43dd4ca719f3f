import AgentJobsCore
import AgentJobsSQLite
import Logging
import ServiceLifecycle
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Settings of a ``SQLiteMessageConsumer``.
public struct SQLiteMessageConsumerConfiguration: Sendable {
    /// What to read: a group (one member owns every partition at a time) or a manual assignment.
    public var subscription: ConsumerSubscription
    /// Messages buffered ahead of the reader; at least 1. When the buffer is full, reading from
    /// the log pauses until the reader takes a message.
    public var bufferCapacity: Int
    /// How often the log is checked for messages written by other processes (or by producers of
    /// another ``SQLiteMessageLog`` instance). Messages from producers of the same log instance
    /// are noticed at once, without waiting for this interval.
    public var pollInterval: Duration
    /// How long a group member's ownership lasts without renewal. The owner renews it every
    /// third of this; a standby takes over when it expires (the owner died) or at once when the
    /// owner stops gracefully.
    public var leaseDuration: Duration

    /// Creates a configuration.
    /// - Parameters:
    ///   - subscription: What to read.
    ///   - bufferCapacity: Messages buffered ahead of the reader (at least 1).
    ///   - pollInterval: How often to look for messages written elsewhere.
    ///   - leaseDuration: How long a group member's ownership lasts without renewal.
    public init(
        subscription: ConsumerSubscription,
        bufferCapacity: Int = 256,
        pollInterval: Duration = .milliseconds(100),
        leaseDuration: Duration = .seconds(10)
    ) {
        self.subscription = subscription
        self.bufferCapacity = max(bufferCapacity, 1)
        self.pollInterval = max(pollInterval, .milliseconds(1))
        self.leaseDuration = max(leaseDuration, .milliseconds(30))
    }
}

/// A consumer of the embedded ``SQLiteMessageLog``, with explicit commits, by group or by manual
/// assignment, shaped like `KafkaConsumer`.
///
/// - `.assignment(groupID:partitions:keyFilter:)`: reads exactly those partitions from the
///   positions committed under `groupID` (from the beginning when none); with a key filter,
///   other keys are skipped inside the query and never delivered.
/// - `.group(id:topics:)`: the embedded shape runs on one machine, so instead of spreading
///   partitions over members, **one member owns every partition of the group at a time**,
///   through a lease row (`log_group_leases`) with an expiry. The owner renews it; other
///   members stand by and take over when the owner stops (it gives the lease up at once) or
///   dies (the lease expires after ``SQLiteMessageConsumerConfiguration/leaseDuration``). Each
///   takeover increments the lease's generation, and commits are fenced by it in the same
///   transaction, so a former owner can never move the new owner's positions.
///
/// It is a `Service`: `run()` reads the log into ``messages`` through a buffer of
/// ``SQLiteMessageConsumerConfiguration/bufferCapacity`` messages until graceful shutdown or
/// cancellation; when the buffer is full, reading waits for the reader (back-pressure). New
/// messages of producers on the same ``SQLiteMessageLog`` wake it at once; others are found
/// by polling. On shutdown, ``messages`` ends, buffered messages are dropped (they were not
/// committed, so they are read again later) and a held group lease is given up.
public final class SQLiteMessageConsumer: MessageConsumer, Service, Sendable {
    /// The messages, in log order per partition; see ``SQLiteMessageConsumerMessages``.
    public let messages: SQLiteMessageConsumerMessages

    private let log: SQLiteMessageLog
    private let configuration: SQLiteMessageConsumerConfiguration
    private let logger: Logger
    private let shared: SQLiteConsumerShared
    /// This consumer's identity as a group member (the lease owner).
    private let memberID: String

    /// Creates the consumer (nothing is read until `run()`).
    /// - Parameters:
    ///   - log: The log to read, shared with the producers of this process.
    ///   - configuration: What and how to read.
    ///   - logger: Receives lifecycle and ownership lines.
    public init(log: SQLiteMessageLog, configuration: SQLiteMessageConsumerConfiguration, logger: Logger) {
        var logger = logger
        logger[metadataKey: "log.group"] = "\(configuration.subscription.groupID)"
        self.log = log
        self.configuration = configuration
        self.logger = logger
        self.shared = SQLiteConsumerShared(capacity: configuration.bufferCapacity)
        self.messages = SQLiteMessageConsumerMessages(shared: shared)
        self.memberID = UUID().uuidString.lowercased()
    }

    /// The partitions this consumer currently owns (for a group: all or nothing).
    public var assignment: Set<TopicPartition> {
        shared.state.withLock { Set($0.positions.keys) }
    }

    /// Messages waiting in the buffer; never more than the configured capacity.
    public var bufferedCount: Int {
        shared.state.withLock { $0.bufferedCount }
    }

    public func nextBatch(maxCount: Int) async throws -> [IncomingMessage]? {
        try await shared.next(upTo: maxCount)
    }

    public func bufferedBatch(maxCount: Int) -> [IncomingMessage] {
        shared.available(upTo: maxCount)
    }

    /// Whether the last fetch read every owned partition to its end; the messages it read are
    /// buffered in the same step.
    public var hasCaughtUp: Bool? {
        shared.state.withLock { $0.caughtUp }
    }

    /// Reads the log until graceful shutdown or cancellation; then gives up a held group lease.
    ///
    /// Database errors while reading are logged and retried after the poll interval; they do
    /// not end the service.
    /// - Throws: ``MessageLogError`` with code `conflict` when called a second time.
    public func run() async throws {
        guard shared.state.withLock({ $0.start() }) else {
            throw MessageLogError(.conflict, "SQLiteMessageConsumer.run() was called twice")
        }
        logger.info("embedded log consumer starting", metadata: ["log.subscription": "\(configuration.subscription)"])
        let shared = self.shared
        log.signal.subscribe(shared.wakeup, interest: configuration.subscription.logInterest)
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await self.readLoop()
            } onGracefulShutdown: {
                shared.close()
            }
        } onCancel: {
            shared.close()
        }
        log.signal.unsubscribe(shared.wakeup)

        if case .group(let groupID, _) = configuration.subscription,
            let generation = shared.state.withLock({ $0.generation })
        {
            do {
                try await log.releaseLease(groupID: groupID, member: memberID, generation: generation)
                logger.info("gave up the group lease", metadata: ["log.generation": "\(generation)"])
            } catch {
                logger.warning("could not give up the group lease; it expires on its own: \(error)")
            }
        }
        shared.state.withLock { $0.closed() }
        logger.info("embedded log consumer stopped")
    }

    /// Commits that every message up to and including each position has been handled. Positions
    /// in partitions this consumer does not own are ignored, as are positions at or before the
    /// committed one; a group member's commit is applied only while it still holds the lease
    /// generation it read under (checked in the commit's transaction).
    /// - Parameter positions: Positions of handled messages.
    /// - Throws: ``MessageLogError``: `unavailable` when the consumer has stopped or the database
    ///   refused the write.
    public func commit(_ positions: [MessagePosition]) async throws {
        let (offsets, generation) = try shared.state.withLock { state throws(MessageLogError) in
            (try state.offsetsToCommit(positions), state.generation)
        }
        guard !offsets.isEmpty else { return }
        let fence: SQLiteMessageLog.Fence?
        switch configuration.subscription {
        case .group:
            // A standby owns nothing, so `offsets` is empty above; an owner always has a generation.
            guard let generation else { return }
            fence = SQLiteMessageLog.Fence(member: memberID, generation: generation)
        case .assignment:
            fence = nil
        }
        let applied = try await log.commit(
            groupID: configuration.subscription.groupID, offsets: offsets, fence: fence)
        if !applied {
            logger.debug("commit ignored: the group lease moved to another member")
        }
    }

    // MARK: The read loop

    private func readLoop() async {
        let clock = ContinuousClock()
        let renewEvery = configuration.leaseDuration / 3
        var renewAt: ContinuousClock.Instant?
        var assigned = false
        var rotation = 0
        let keyFilter: [UInt8]?
        if case .assignment(_, _, let filter) = configuration.subscription {
            keyFilter = filter
        } else {
            keyFilter = nil
        }

        while shared.state.withLock({ $0.isRunning }) {
            do {
                // 1. Ownership.
                switch configuration.subscription {
                case .assignment(let groupID, let partitions, _):
                    if !assigned {
                        let committed = try await log.committedOffsets(groupID: groupID, partitions)
                        var positions: [TopicPartition: Int64] = [:]
                        for partition in partitions { positions[partition] = committed[partition] ?? 0 }
                        shared.state.withLock { $0.assign(positions, generation: nil) }
                        assigned = true
                    }
                case .group(let groupID, let topics):
                    if let due = renewAt, clock.now >= due,
                        let generation = shared.state.withLock({ $0.generation })
                    {
                        let renewed = try await log.renewLease(
                            groupID: groupID, member: memberID, generation: generation,
                            duration: configuration.leaseDuration)
                        if renewed {
                            renewAt = clock.now + renewEvery
                        } else {
                            logger.warning("lost the group lease to another member; dropping buffered messages")
                            shared.state.withLock { $0.revokeAll() }
                            renewAt = nil
                        }
                    }
                    if renewAt == nil {
                        switch try await log.acquireLease(
                            groupID: groupID, topics: topics, member: memberID, duration: configuration.leaseDuration)
                        {
                        case .acquired(let generation, let positions):
                            shared.state.withLock { $0.assign(positions, generation: generation) }
                            renewAt = clock.now + renewEvery
                            logger.info(
                                "owns the group's partitions",
                                metadata: ["log.generation": "\(generation)", "log.partitions": "\(positions.count)"])
                        case .held(let until):
                            let untilExpiry = Duration.milliseconds(max(until - Date().millisecondsSince1970, 1))
                            await shared.wakeup.wait(timeout: min(configuration.pollInterval, untilExpiry))
                            continue
                        }
                    }
                }

                // 2. Fetch what fits in the buffer.
                let idle = min(
                    configuration.pollInterval, renewAt.map { max($0 - clock.now, .milliseconds(1)) } ?? .seconds(3600))
                let plan = shared.state.withLock { $0.fetchPlan }
                if plan.room <= 0 || plan.positions.isEmpty {
                    await shared.wakeup.wait(timeout: idle)
                    continue
                }
                // Rotate the partition order so that a busy partition cannot starve the others.
                let ordered = plan.positions.sorted {
                    ($0.key.topic, $0.key.partition) < ($1.key.topic, $1.key.partition)
                }
                rotation = (rotation + 1) % ordered.count
                let requests = (ordered[rotation...] + ordered[..<rotation]).map {
                    SQLiteMessageLog.FetchRequest(topicPartition: $0.key, from: $0.value)
                }
                let result = try await log.fetch(requests, limit: plan.room, keyFilter: keyFilter)
                if let (waiter, messages) = shared.state.withLock({ $0.fetched(result) }) {
                    waiter.resume(returning: messages)
                }
                if result.caughtUp {
                    await shared.wakeup.wait(timeout: idle)
                }
            } catch {
                guard shared.state.withLock({ $0.isRunning }) else { break }
                logger.warning("embedded log consumer: \(error); retrying")
                await shared.wakeup.wait(timeout: configuration.pollInterval)
            }
        }
    }
}

/// State shared between the consumer, its read loop and its readers.
final class SQLiteConsumerShared: Sendable {
    typealias Waiter = CheckedContinuation<[IncomingMessage]?, any Error>

    let state: Mutex<SQLiteConsumerStateMachine<Waiter>>
    /// Wakes the read loop: new messages, room in the buffer, a released lease, shutdown.
    let wakeup = Wakeup()

    init(capacity: Int) {
        state = Mutex(SQLiteConsumerStateMachine(capacity: capacity))
    }

    /// Ends the message sequence and stops the read loop.
    func close() {
        let waiter = state.withLock { $0.close() }
        waiter?.resume(returning: nil)
        wakeup.wake()
    }

    /// At most `maxCount` messages, waiting for the first; `nil` once the consumer shut down.
    func next(upTo maxCount: Int) async throws -> [IncomingMessage]? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: Waiter) in
                let action = state.withLock { state -> SQLiteConsumerStateMachine<Waiter>.NextAction? in
                    // Checked under the lock: either the cancel handler already ran (and we see
                    // the flag here), or it runs later and finds the stored waiter.
                    Task.isCancelled ? nil : state.next(upTo: maxCount, waiter: continuation)
                }
                switch action {
                case nil:
                    continuation.resume(throwing: CancellationError())
                case .messages(let messages, let wakeFetcher):
                    continuation.resume(returning: messages)
                    if wakeFetcher { wakeup.wake() }
                case .suspended:
                    break
                case .finished:
                    continuation.resume(returning: nil)
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
        let (messages, wakeFetcher) = state.withLock { $0.available(upTo: maxCount) }
        if wakeFetcher { wakeup.wake() }
        return messages
    }
}

/// The messages of a ``SQLiteMessageConsumer``: an `AsyncSequence` fed through a bounded buffer.
///
/// Only one task may iterate at a time (a second concurrent `next()` throws ``MessageLogError`` with
/// code `conflict`). Cancelling the iterating task makes `next()` throw `CancellationError`
/// without losing buffered messages. The sequence ends (returns `nil`) when the consumer shuts
/// down. Messages only arrive while ``SQLiteMessageConsumer/run()`` is running.
public struct SQLiteMessageConsumerMessages: AsyncSequence, Sendable {
    public typealias Element = IncomingMessage
    public typealias Failure = any Error

    let shared: SQLiteConsumerShared

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(shared: shared)
    }

    /// The iterator of ``SQLiteMessageConsumerMessages``.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let shared: SQLiteConsumerShared

        /// The next message, or `nil` once the consumer shut down.
        public mutating func next() async throws -> IncomingMessage? {
            try await shared.next(upTo: 1)?.first
        }
    }
}

extension ConsumerSubscription {
    /// What this subscription reads, for the log's targeted wake-ups.
    var logInterest: MessageLogInterest {
        switch self {
        case .assignment(_, let partitions, let keyFilter):
            return .partitions(Set(partitions), keyFilter: keyFilter)
        case .group(_, let topics):
            return .topics(Set(topics))
        }
    }
}
