import AgentJobsCore

/// The consumer's lifecycle, bounded message buffer, waiting reader, partition ownership and
/// commit bookkeeping, as a value.
///
/// Generic over `Waiter` (the suspended reader) so that tests can drive it with plain values.
/// It performs no I/O; ``KafkaConsumer`` holds it behind a lock and acts on what it returns.
///
/// Commit rules, which make rebalances neither lose nor double-apply positions:
/// - a position is committed only for a partition this consumer currently owns, and only after
///   a message was fetched from it since it was (re)assigned: anything older belongs to an
///   earlier ownership, whose positions may since have been moved by another owner;
/// - the committed offset only moves forward from the position reading resumed at.
struct ConsumerStateMachine<Waiter> {
    enum Lifecycle: Equatable {
        case initial
        case running
        /// Shutdown began: nothing more is handed out; the handle is being closed.
        case closing
        /// The handle is closed: commits fail.
        case closed
    }

    struct PartitionState: Equatable {
        /// Offset of the first message fetched since this partition was (re)assigned.
        var resumedAt: Int64?
        /// The furthest offset (next to read) committed during this ownership.
        var committed: Int64?
        /// The offset after the last message received (buffered or skipped by the key filter).
        var next: Int64?
    }

    enum PollAction: Equatable {
        /// Call `rd_kafka_consumer_poll`.
        case poll
        /// The buffer is full: wait until the reader takes a message.
        case waitForReader
        /// Leave the poll loop.
        case stop
    }

    enum ReceiveAction {
        /// Buffered, skipped, or dropped: nothing to do.
        case none
        /// Hand these messages (the one received) straight to the waiting reader.
        case resume(Waiter, [IncomingMessage])
    }

    enum NextAction {
        /// Return these messages; wake the poll thread when `wakePoller` (the buffer had been full).
        case messages([IncomingMessage], wakePoller: Bool)
        /// The waiter was stored; it is resumed later.
        case suspended
        /// The sequence is over (`nil`: clean end).
        case finished(KafkaError?)
        /// This call fails (another reader is waiting).
        case fail(KafkaError)
    }

    let capacity: Int
    let keyFilter: [UInt8]?
    private(set) var lifecycle: Lifecycle = .initial
    private(set) var assignment: [TopicPartition: PartitionState] = [:]
    private var buffer: ConsumerBuffer<Waiter>
    private var terminalError: KafkaError?

    init(capacity: Int, keyFilter: [UInt8]?) {
        self.capacity = max(capacity, 1)
        self.keyFilter = keyFilter
        self.buffer = ConsumerBuffer(capacity: capacity)
    }

    var bufferedCount: Int { buffer.count }

    mutating func start() -> Result<Void, KafkaError> {
        guard lifecycle == .initial else {
            return .failure(KafkaError(code: .alreadyRunning, message: "KafkaConsumer.run() was called twice"))
        }
        lifecycle = .running
        return .success(())
    }

    // MARK: Poll thread

    var pollAction: PollAction {
        switch lifecycle {
        case .initial, .running:
            return buffer.isFull ? .waitForReader : .poll
        case .closing, .closed:
            return .stop
        }
    }

    /// A message arrived from librdkafka.
    mutating func received(_ message: IncomingMessage) -> ReceiveAction {
        guard lifecycle == .running else { return .none }
        let topicPartition = TopicPartition(topic: message.topic, partition: message.partition)
        // A message of a partition we no longer own was fetched before the revoke: drop it.
        guard var partition = assignment[topicPartition] else { return .none }
        if partition.resumedAt == nil { partition.resumedAt = message.offset }
        partition.next = message.offset + 1
        assignment[topicPartition] = partition
        if let keyFilter, message.key != keyFilter {
            return .none
        }
        if let (waiter, messages) = buffer.deliver(CollectionOfOne(message)) {
            return .resume(waiter, messages)
        }
        return .none
    }

    /// The group assigned partitions (or the manual assignment was applied). Each starts a new
    /// ownership: positions of earlier ownerships can no longer be committed.
    mutating func assigned(_ partitions: [TopicPartition]) {
        for partition in partitions {
            assignment[partition] = PartitionState()
        }
    }

    /// Partitions were revoked or lost: drop their buffered messages and refuse their commits.
    mutating func revoked(_ partitions: [TopicPartition]) {
        let revoked = Set(partitions)
        for partition in revoked {
            assignment.removeValue(forKey: partition)
        }
        buffer.removeAll { revoked.contains(TopicPartition(topic: $0.topic, partition: $0.partition)) }
    }

    /// A fatal error ended polling. Returns the reader to fail, if one waits.
    mutating func failed(_ error: KafkaError) -> Waiter? {
        if terminalError == nil {
            terminalError = error
        }
        return close()
    }

    // MARK: Reader

    /// The reader asks for at most `maxCount` messages; `waiter` is stored when none is ready.
    mutating func next(upTo maxCount: Int = 1, waiter newWaiter: Waiter) -> NextAction {
        if buffer.count == 0, lifecycle == .closing || lifecycle == .closed {
            return .finished(terminalError)
        }
        switch buffer.take(upTo: maxCount, waiter: newWaiter) {
        case .messages(let messages, let wasFull):
            return .messages(messages, wakePoller: wasFull)
        case .suspended:
            return .suspended
        case .busy:
            return .fail(
                KafkaError(code: .concurrentIteration, message: "two tasks iterate the consumer's messages at once"))
        }
    }

    /// The messages buffered, at most `maxCount`, without waiting; `wakePoller` as for ``next(upTo:waiter:)``.
    mutating func available(upTo maxCount: Int) -> (messages: [IncomingMessage], wakePoller: Bool) {
        let (messages, wasFull) = buffer.available(upTo: maxCount)
        return (messages, wasFull)
    }

    /// The waiting reader's task was cancelled. Returns it if it is still waiting.
    mutating func cancelWaiter() -> Waiter? {
        buffer.removeWaiter()
    }

    // MARK: Commits

    /// Turns handled positions into the offsets to commit (next offset to read per partition),
    /// skipping stale and already covered ones.
    /// - Throws: `consumerClosed` once the handle is closed.
    func offsetsToCommit(_ positions: [MessagePosition]) throws(KafkaError) -> [TopicPartition: Int64] {
        if lifecycle == .closed {
            throw KafkaError(code: .consumerClosed, message: "the consumer is closed; positions were not committed")
        }
        var offsets: [TopicPartition: Int64] = [:]
        for position in positions {
            guard let partition = assignment[position.topicPartition], let resumedAt = partition.resumedAt else {
                continue  // not ours (any more): the owner re-reads it
            }
            let next = position.offset + 1
            let floor = max(resumedAt, partition.committed ?? resumedAt)
            guard next > floor, position.offset >= resumedAt else { continue }
            offsets[position.topicPartition] = max(offsets[position.topicPartition] ?? next, next)
        }
        return offsets
    }

    /// The broker confirmed these commits.
    mutating func committed(_ offsets: [TopicPartition: Int64]) {
        for (topicPartition, offset) in offsets {
            guard var partition = assignment[topicPartition] else { continue }
            partition.committed = max(partition.committed ?? offset, offset)
            assignment[topicPartition] = partition
        }
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

    /// The handle was closed.
    mutating func closed() {
        lifecycle = .closed
        assignment.removeAll()
    }
}
