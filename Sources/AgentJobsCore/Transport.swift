import Foundation

// The broker-agnostic message transport. Two implementations exist: Apache Kafka (module
// `AgentJobsKafka`, distributed shape) and a durable log inside the embedded SQLite database
// (embedded shape). Nothing here may assume one of them; one conformance suite runs against both.

/// One header of a message: a name and an optional raw value.
///
/// Headers carry the CloudEvents `ce_*` attributes of the wire envelope. Names may repeat.
public struct MessageHeader: Sendable, Hashable {
    /// The header name, e.g. `ce_type`.
    public var key: String
    /// The raw value; `nil` is a header without a value (distinct from an empty value).
    public var value: [UInt8]?

    /// Creates a header from raw bytes.
    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }

    /// Creates a header whose value is the UTF-8 encoding of `value`.
    public init(key: String, value: String) {
        self.key = key
        self.value = Array(value.utf8)
    }

    /// The value decoded as UTF-8, or `nil` when there is no value or it is not valid UTF-8.
    public var stringValue: String? {
        value.flatMap { String(utf8Bytes: $0) }
    }
}

/// A topic and one of its partitions.
public struct TopicPartition: Sendable, Hashable, CustomStringConvertible {
    /// The topic name.
    public var topic: String
    /// The partition index, starting at 0.
    public var partition: Int32

    /// Creates a topic-partition pair.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// Where one message sits in the log: its partition and its offset within that partition.
public struct MessagePosition: Sendable, Hashable, CustomStringConvertible {
    /// The partition holding the message.
    public var topicPartition: TopicPartition
    /// The message's offset within the partition (the first message has offset 0).
    public var offset: Int64

    /// Creates a position.
    public init(topicPartition: TopicPartition, offset: Int64) {
        self.topicPartition = topicPartition
        self.offset = offset
    }

    /// Creates a position from its parts.
    public init(topic: String, partition: Int32, offset: Int64) {
        self.init(topicPartition: TopicPartition(topic: topic, partition: partition), offset: offset)
    }

    public var description: String { "\(topicPartition)@\(offset)" }
}

/// A message to publish.
public struct OutgoingMessage: Sendable, Hashable {
    /// The destination topic.
    public var topic: String
    /// The partitioning key (host id, run id, …); messages with equal keys keep their order.
    /// `nil` lets the transport choose a partition.
    public var key: [UInt8]?
    /// The payload.
    public var value: [UInt8]
    /// Headers, in order.
    public var headers: [MessageHeader]

    /// Creates a message from raw bytes.
    public init(topic: String, key: [UInt8]?, value: [UInt8], headers: [MessageHeader] = []) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
    }

    /// Creates a message whose key is the UTF-8 encoding of `key`.
    public init(topic: String, key: String, value: [UInt8], headers: [MessageHeader] = []) {
        self.init(topic: topic, key: Array(key.utf8), value: value, headers: headers)
    }
}

/// A message read from the log.
public struct IncomingMessage: Sendable, Hashable {
    /// The topic it was read from.
    public var topic: String
    /// The partition it was read from.
    public var partition: Int32
    /// Its offset within the partition.
    public var offset: Int64
    /// The partitioning key, if any.
    public var key: [UInt8]?
    /// The payload.
    public var value: [UInt8]
    /// Headers, in order.
    public var headers: [MessageHeader]
    /// When the message was produced or appended, if the log records it.
    public var timestamp: Date?

    /// Creates an incoming message (transports and tests use this).
    public init(
        topic: String,
        partition: Int32,
        offset: Int64,
        key: [UInt8]?,
        value: [UInt8],
        headers: [MessageHeader] = [],
        timestamp: Date? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// The message's position, as passed to ``MessageConsumer/commit(_:)``.
    public var position: MessagePosition {
        MessagePosition(topic: topic, partition: partition, offset: offset)
    }

    /// The key decoded as UTF-8, or `nil` when absent or not valid UTF-8.
    public var keyString: String? {
        key.flatMap { String(utf8Bytes: $0) }
    }

    /// The first header named `name`, if any.
    public func header(_ name: String) -> MessageHeader? {
        headers.first { $0.key == name }
    }
}

/// How a consumer chooses what it reads.
public enum ConsumerSubscription: Sendable, Hashable {
    /// Join the consumer group `id` and read the partitions of `topics` that the group assigns
    /// to this member (the aggregator). Partitions move between members on rebalances.
    case group(id: String, topics: [String])
    /// Read exactly `partitions` with no group membership and hence no rebalances (an
    /// orchestrator reading its host's partition). `groupID` only names where committed
    /// positions are kept. When `keyFilter` is set, messages with any other key are skipped by
    /// the transport and never delivered; committing a later delivered message covers them.
    case assignment(groupID: String, partitions: [TopicPartition], keyFilter: [UInt8]? = nil)

    /// The group under which positions are committed.
    public var groupID: String {
        switch self {
        case .group(let id, _): id
        case .assignment(let groupID, _, _): groupID
        }
    }
}

/// Maps a message key to a partition index in `0..<partitionCount`.
///
/// Producers and manually assigned consumers must agree on it: for Kafka it is the Java client's
/// murmur2 partitioner (``Murmur2Partitioner``, which `AgentJobsKafka.KafkaPartitioner` forwards to).
/// - Parameters:
///   - key: The key bytes (UTF-8 of a host id or run id).
///   - partitionCount: The topic's partition count; must be positive.
/// - Returns: The partition index.
public typealias PartitionForKey = @Sendable (_ key: [UInt8], _ partitionCount: Int32) -> Int32

/// Publishes messages and reports their durable positions.
///
/// Order: messages with the same key that are handed to one ``sendBatch(_:)`` call, or to
/// sequential ``send(_:)`` calls, are stored in that order. Concurrent calls have no order
/// relative to each other.
public protocol MessageProducer: Sendable {
    /// Publishes one message and returns once the log has durably stored it (for Kafka: the
    /// delivery report after `acks=all`).
    /// - Parameter message: The message to publish.
    /// - Returns: Where the message was stored.
    /// - Throws: The transport's error when the message was not stored, e.g. because the
    ///   delivery timeout passed or the producer is shutting down. Never fails silently.
    func send(_ message: OutgoingMessage) async throws -> MessagePosition

    /// Publishes many messages at once (they are in flight together) and returns once every
    /// one of them was stored or failed.
    /// - Parameter messages: The messages, in the order they must be stored per key.
    /// - Returns: One result per message, in the same order.
    func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>]

    /// Hands messages to the transport in order and returns once it has taken them, usually
    /// before they are stored, so that a caller can keep several batches in flight.
    ///
    /// Order: messages handed over by a call made after this one returned are stored after these
    /// (per key) unless one of these fails; a caller that must keep a key's order across a failure
    /// holds back that key's later messages itself.
    /// - Parameter messages: The messages, in the order they must be stored per key.
    /// - Returns: The delivery results still to come, one per message.
    func enqueueBatch(_ messages: [OutgoingMessage]) async -> PendingDelivery
}

extension MessageProducer {
    /// Stores the messages with ``sendBatch(_:)`` before returning: for transports without a local
    /// queue of their own, handing over and storing are the same step.
    public func enqueueBatch(_ messages: [OutgoingMessage]) async -> PendingDelivery {
        let results = await sendBatch(messages)
        return PendingDelivery { results }
    }
}

/// The delivery results of messages a producer has taken but may not have stored yet
/// (``MessageProducer/enqueueBatch(_:)``).
public struct PendingDelivery: Sendable {
    private let wait: @Sendable () async -> [Result<MessagePosition, any Error>]

    /// - Parameter wait: Returns once every message was stored or failed, one result per message
    ///   in order; it is called at most once.
    public init(_ wait: @escaping @Sendable () async -> [Result<MessagePosition, any Error>]) {
        self.wait = wait
    }

    /// Waits until every message was stored or failed. Call it once.
    /// - Returns: One result per message, in the order they were handed over.
    public func results() async -> [Result<MessagePosition, any Error>] {
        await wait()
    }
}

/// Reads messages and commits how far their effects are durable.
///
/// At-least-once: a message whose position was not committed is delivered again after a
/// restart (or to the next owner of its partition), so handlers must be idempotent.
public protocol MessageConsumer: Sendable {
    /// The sequence type of ``messages``.
    associatedtype Messages: AsyncSequence<IncomingMessage, any Error> & Sendable

    /// The messages, in log order per partition. The sequence buffers a bounded number of
    /// messages ahead of the reader: when the reader is slow, reading from the log pauses.
    /// Only one task may iterate it at a time. It ends when the consumer shuts down.
    var messages: Messages { get }

    /// The next messages in log order, at most `maxCount` (at least one), as soon as one is there:
    /// the same buffer as ``messages`` (one reader at a time, of either), taken a batch at once.
    /// - Returns: `nil` once the consumer shut down.
    /// - Throws: As ``messages`` does (a second concurrent reader, a fatal transport error,
    ///   `CancellationError` when the reading task is cancelled; nothing buffered is lost then).
    func nextBatch(maxCount: Int) async throws -> [IncomingMessage]?

    /// The messages already read ahead, at most `maxCount`, without waiting (possibly none).
    func bufferedBatch(maxCount: Int) -> [IncomingMessage]

    /// Whether the consumer has read to the end of every partition it owns, as that end was last
    /// seen (so past every message written before the consumer started): each message is in its
    /// buffer, taken from it, or skipped by its key filter. `nil` when the transport cannot tell.
    var hasCaughtUp: Bool? { get }

    /// Records that every message up to and including each position (in its partition) has
    /// been handled durably; call it only after the effect is durable (e.g. after the DB commit).
    ///
    /// Committing is monotonic: a position at or before one already committed is ignored, and
    /// positions in partitions this consumer no longer owns are ignored (their new owner
    /// re-reads them), so a late commit can never move another owner's position backwards.
    /// - Parameter positions: Positions of handled messages; several per partition are allowed
    ///   (the furthest one wins).
    /// - Throws: The transport's error when the commit did not happen (nothing was skipped
    ///   silently except as described above).
    func commit(_ positions: [MessagePosition]) async throws
}

extension MessageConsumer {
    /// A consumer that cannot tell whether it has caught up.
    public var hasCaughtUp: Bool? { nil }

    /// Commits the position of one handled message. See ``commit(_:)``.
    /// - Parameter message: The message whose effect is durable.
    /// - Throws: As ``commit(_:)``.
    public func commit(_ message: IncomingMessage) async throws {
        try await commit([message.position])
    }
}
