import AgentJobsCore
import AgentJobsSQLite
import Dispatch
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Settings of a ``SQLiteMessageLog``.
public struct SQLiteMessageLogConfiguration: Sendable {
    /// Partitions of a topic that is created implicitly (by the first send to it or by a group
    /// consumer subscribing to it). ``SQLiteMessageLog/createTopic(_:partitionCount:)`` sets
    /// another count explicitly.
    public var defaultPartitionCount: Int32
    /// Maps a key to its partition; defaults to the Java-compatible murmur2 partitioner that
    /// Kafka uses, so a host's partition is the same in both shapes.
    public var partitionForKey: PartitionForKey

    /// Creates a configuration.
    /// - Parameters:
    ///   - defaultPartitionCount: Partitions of implicitly created topics; at least 1.
    ///   - partitionForKey: The key→partition mapping.
    public init(
        defaultPartitionCount: Int32 = 4,
        partitionForKey: @escaping PartitionForKey = Murmur2Partitioner.partitionForKey
    ) {
        self.defaultPartitionCount = max(defaultPartitionCount, 1)
        self.partitionForKey = partitionForKey
    }
}

/// The embedded message transport: a durable, partitioned log inside the SQLite database of
/// the embedded shape, with the same model as Kafka (topics, partitions, dense offsets,
/// committed positions per group).
///
/// Create one per database and process and share it: ``SQLiteMessageProducer`` and every
/// ``SQLiteMessageConsumer`` made from it use it to notice new messages immediately (an
/// in-process signal after each commit that wakes only the consumers reading a partition, and
/// key, that the commit appended to). Writers in other processes (or other
/// `SQLiteMessageLog` instances) are noticed by polling at
/// ``SQLiteMessageConsumerConfiguration/pollInterval``.
///
/// Tables (schema migration 2): `log_topics` (name, partition count), `log_partitions` (next
/// offset per partition, so offsets stay dense after retention), `log_messages` (topic,
/// partition, offset, key, value, headers, append time), `log_commits` (next offset per group,
/// topic and partition; only moves forward) and `log_group_leases` (which member owns a
/// consumer group; see ``SQLiteMessageConsumer``).
///
/// All SQLite work goes through the database's writer queue (group commit with the store's
/// own writes) and reader queues; nothing blocks the cooperative thread pool.
public final class SQLiteMessageLog: Sendable {
    let database: SQLiteDatabase
    public let configuration: SQLiteMessageLogConfiguration
    let signal = MessageLogSignal()
    /// Partition counts never change once a topic exists, so they are cached after commit.
    let partitionCounts = Mutex<[String: Int32]>([:])
    private let roundRobin = Atomic<Int>(0)
    private let ownsDatabase: Bool

    /// A log in an open database (the embedded store's: the same file and connections, the same
    /// writer queue, so an outbox row and the message it becomes commit together).
    /// - Parameters:
    ///   - database: A database opened with ``SQLiteSchema/migrations``, which hold the log tables.
    ///   - configuration: Partitioning settings.
    package init(sharing database: SQLiteDatabase, configuration: SQLiteMessageLogConfiguration = .init()) {
        self.database = database
        self.configuration = configuration
        self.ownsDatabase = false
    }

    /// Opens (creating if needed) the database at `path` on its own, for a process that needs the
    /// log but not the store. Pending migrations are applied, as the store would.
    /// - Parameters:
    ///   - path: The database file; its directory must exist.
    ///   - durableCommits: `true` fsyncs every commit; `false` survives process crashes only.
    ///   - configuration: Partitioning settings.
    /// - Throws: ``MessageLogError`` with code `unavailable` when the file cannot be opened or migrated.
    public convenience init(
        path: String, durableCommits: Bool = true, configuration: SQLiteMessageLogConfiguration = .init()
    ) throws {
        let database: SQLiteDatabase
        do {
            database = try SQLiteDatabase(
                path: path, durability: durableCommits ? .full : .normal, migrations: SQLiteSchema.migrations)
        } catch let error as SQLiteError {
            throw MessageLogError(.unavailable, "cannot open the SQLite database at \(path): \(error.message)")
        }
        self.init(database: database, configuration: configuration, ownsDatabase: true)
    }

    private init(database: SQLiteDatabase, configuration: SQLiteMessageLogConfiguration, ownsDatabase: Bool) {
        self.database = database
        self.configuration = configuration
        self.ownsDatabase = ownsDatabase
    }

    /// Waits for queued writes when the log opened its own database (``init(path:durableCommits:configuration:)``);
    /// a log sharing a store's database leaves closing to the store.
    public func close() async {
        if ownsDatabase { await database.close() }
    }

    // MARK: Topics

    /// Creates `topic` with `partitionCount` partitions unless it exists; an existing topic keeps
    /// its partition count (as with Kafka, partitions are never re-counted under a key).
    /// - Parameters:
    ///   - topic: The topic name.
    ///   - partitionCount: Partitions of a new topic; at least 1.
    /// - Returns: The topic's partition count.
    /// - Throws: ``MessageLogError`` (`unavailable`) when the database refuses the write.
    @discardableResult
    public func createTopic(_ topic: String, partitionCount: Int32) async throws -> Int32 {
        let now = Date().millisecondsSince1970
        let count = try await guarded {
            try await self.database.write { db in
                try Self.ensureTopic(db, topic, partitionCount: max(partitionCount, 1), now: now)
            }
        }
        partitionCounts.withLock { $0[topic] = count }
        return count
    }

    /// The number of partitions of `topic`, or `nil` when it does not exist yet.
    /// - Throws: ``MessageLogError`` (`unavailable`) when the database cannot be read.
    public func partitionCount(ofTopic topic: String) async throws -> Int32? {
        if let cached = partitionCounts.withLock({ $0[topic] }) { return cached }
        let count = try await guarded {
            try await self.database.read { db in
                try db.query("SELECT partition_count FROM log_topics WHERE name = ?", [.text(topic)]).first
                    .flatMap { $0.int64("partition_count") }.map { Int32(clamping: $0) }
            }
        }
        if let count { partitionCounts.withLock { $0[topic] = count } }
        return count
    }

    /// The partition that messages with `key` go to, as the producer computes it.
    /// - Throws: ``MessageLogError`` (`unavailable`) when the database cannot be read.
    public func partition(forKey key: [UInt8], inTopic topic: String) async throws -> Int32 {
        let count = try await partitionCount(ofTopic: topic) ?? configuration.defaultPartitionCount
        return configuration.partitionForKey(key, count)
    }

    static func ensureTopic(_ db: SQLiteConnection, _ topic: String, partitionCount: Int32, now: Int64) throws -> Int32
    {
        try db.query(
            "INSERT INTO log_topics (name, partition_count, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
            [.text(topic), .integer(Int64(partitionCount)), .integer(now)])
        if db.changes == 1 {
            for index in 0..<partitionCount {
                try db.query(
                    "INSERT INTO log_partitions (topic, partition_index, next_offset) VALUES (?, ?, 0)",
                    [.text(topic), .integer(Int64(index))])
            }
            return partitionCount
        }
        guard
            let existing = try db.query("SELECT partition_count FROM log_topics WHERE name = ?", [.text(topic)])
                .first?.int64("partition_count")
        else { throw MessageLogError.corrupt("log_topics", "partition_count", of: "topic \(topic)") }
        return Int32(clamping: existing)
    }

    // MARK: Appending

    /// Appends `messages` in one transaction and returns their positions, in order.
    func append(_ messages: [OutgoingMessage]) async throws -> [MessagePosition] {
        if messages.isEmpty { return [] }
        let now = Date().millisecondsSince1970
        let known = partitionCounts.withLock { $0 }
        let configuration = self.configuration
        // Encoded before the writer queue, which every writer of the database waits for.
        let encodedHeaders = messages.map {
            $0.headers.isEmpty ? SQLiteValue.null : .blob(HeaderCodec.encode($0.headers))
        }
        let (positions, counts, appended) = try await guarded {
            try await self.database.write { db -> ([MessagePosition], [String: Int32], AppendedMessages) in
                var counts = known
                var nextOffsets: [TopicPartition: Int64] = [:]
                var appended = AppendedMessages()
                var positions: [MessagePosition] = []
                positions.reserveCapacity(messages.count)
                for (message, headers) in zip(messages, encodedHeaders) {
                    let count: Int32
                    if let cached = counts[message.topic] {
                        count = cached
                    } else {
                        count = try Self.ensureTopic(
                            db, message.topic, partitionCount: configuration.defaultPartitionCount, now: now)
                        counts[message.topic] = count
                    }
                    let partition =
                        message.key.map { configuration.partitionForKey($0, count) } ?? self.nextUnkeyedPartition(count)
                    guard (0..<count).contains(partition) else {
                        throw MessageLogError(
                            .unavailable,
                            "the partitioner placed a message of \(message.topic) on partition \(partition) of \(count)"
                        )
                    }
                    let topicPartition = TopicPartition(topic: message.topic, partition: partition)
                    let offset: Int64
                    if let next = nextOffsets[topicPartition] {
                        offset = next
                    } else {
                        guard
                            let stored = try db.query(
                                "SELECT next_offset FROM log_partitions WHERE topic = ? AND partition_index = ?",
                                [.text(message.topic), .integer(Int64(partition))]
                            ).first?.int64("next_offset")
                        else {
                            throw MessageLogError(.unavailable, "the message log has no partition \(topicPartition)")
                        }
                        offset = stored
                    }
                    try db.execute(
                        """
                        INSERT INTO log_messages (topic, partition_index, message_offset, key, value, headers, appended_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        """,
                        [
                            .text(message.topic), .integer(Int64(partition)), .integer(offset),
                            message.key.map(SQLiteValue.blob) ?? .null, .blob(message.value),
                            headers,
                            .integer(now),
                        ])
                    nextOffsets[topicPartition] = offset + 1
                    positions.append(MessagePosition(topicPartition: topicPartition, offset: offset))
                    appended.add(topicPartition, key: message.key)
                }
                for (topicPartition, next) in nextOffsets {
                    try db.execute(
                        "UPDATE log_partitions SET next_offset = ? WHERE topic = ? AND partition_index = ?",
                        [.integer(next), .text(topicPartition.topic), .integer(Int64(topicPartition.partition))])
                }
                return (positions, counts, appended)
            }
        }
        partitionCounts.withLock { $0.merge(counts) { _, new in new } }
        signal.signal(appended)
        return positions
    }

    /// Messages without a key are spread over the partitions in turn.
    private func nextUnkeyedPartition(_ count: Int32) -> Int32 {
        let next = roundRobin.wrappingAdd(1, ordering: .relaxed).oldValue
        return Int32(abs(next % Int(count)))
    }

    // MARK: Reading

    /// Where to read one partition from.
    struct FetchRequest: Sendable {
        var topicPartition: TopicPartition
        /// The next offset to read.
        var from: Int64
    }

    /// What one fetch returned.
    struct FetchResult: Sendable {
        var messages: [IncomingMessage]
        /// How far each partition was read (next offset to read), including skipped messages.
        var advancedTo: [TopicPartition: Int64]
        /// `false` when some partition may hold more messages than were returned.
        var caughtUp: Bool
    }

    /// Reads up to `limit` messages in total from `requests`, in log order per partition, in one
    /// snapshot. With `keyFilter`, only messages with that key are returned, and the partitions
    /// still advance past the others.
    func fetch(_ requests: [FetchRequest], limit: Int, keyFilter: [UInt8]?) async throws -> FetchResult {
        try await guarded {
            try await self.database.read { db in
                var result = FetchResult(messages: [], advancedTo: [:], caughtUp: true)
                var remaining = limit
                for request in requests {
                    guard remaining > 0 else {
                        result.caughtUp = false
                        break
                    }
                    let topic = request.topicPartition.topic
                    let partition = Int64(request.topicPartition.partition)
                    let sql: String
                    var bindings: [SQLiteValue] = [.text(topic), .integer(partition), .integer(request.from)]
                    if let keyFilter {
                        sql = """
                            SELECT message_offset, key, value, headers, appended_at FROM log_messages
                            WHERE topic = ? AND partition_index = ? AND message_offset >= ? AND key = ?
                            ORDER BY message_offset LIMIT ?
                            """
                        bindings.append(.blob(keyFilter))
                    } else {
                        sql = """
                            SELECT message_offset, key, value, headers, appended_at FROM log_messages
                            WHERE topic = ? AND partition_index = ? AND message_offset >= ?
                            ORDER BY message_offset LIMIT ?
                            """
                    }
                    bindings.append(.int(remaining))
                    var count = 0
                    var lastOffset: Int64?
                    try db.forEachRow(sql, bindings) { row in
                        let place = "\(request.topicPartition)"
                        guard let offset = row.int64(at: 0) else {
                            throw MessageLogError.corrupt("log_messages", "message_offset", of: place)
                        }
                        let key = row.value(at: 1)
                        guard let value = row.value(at: 2).bytes else {
                            throw MessageLogError.corrupt("log_messages", "value", of: "\(place) offset \(offset)")
                        }
                        var headers: [MessageHeader] = []
                        if let stored = row.value(at: 3).bytes {
                            guard let decoded = HeaderCodec.decode(stored) else {
                                throw MessageLogError.corrupt(
                                    "log_messages", "headers", of: "\(place) offset \(offset)")
                            }
                            headers = decoded
                        }
                        result.messages.append(
                            IncomingMessage(
                                topic: topic, partition: request.topicPartition.partition, offset: offset,
                                key: key == .null ? nil : key.bytes, value: value, headers: headers,
                                timestamp: row.date(at: 4)))
                        count += 1
                        lastOffset = offset
                    }
                    remaining -= count
                    if remaining == 0 {
                        // The page was full: more may follow right after the last row.
                        result.caughtUp = false
                        if let lastOffset { result.advancedTo[request.topicPartition] = lastOffset + 1 }
                    } else {
                        // Read to the end of the partition (in this snapshot), skipped keys included.
                        guard
                            let end = try db.query(
                                "SELECT next_offset FROM log_partitions WHERE topic = ? AND partition_index = ?",
                                [.text(topic), .integer(partition)]
                            ).first?.int64("next_offset")
                        else {
                            throw MessageLogError.corrupt(
                                "log_partitions", "next_offset", of: "\(request.topicPartition)")
                        }
                        result.advancedTo[request.topicPartition] = max(request.from, end)
                    }
                }
                return result
            }
        }
    }

    // MARK: Commits

    /// Messages behind each partition's end for every group that committed in it, by group: for
    /// the metrics (a partition a group has never committed in is not listed).
    /// - Throws: ``MessageLogError`` (`unavailable`) when the database cannot be read.
    public func consumerLag() async throws -> [String: [TopicPartition: Int64]] {
        try await guarded {
            try await self.database.read { db in
                var lag: [String: [TopicPartition: Int64]] = [:]
                for row in try db.query(
                    """
                    SELECT c.group_id, c.topic, c.partition_index, MAX(0, p.next_offset - c.next_offset) AS lag
                    FROM log_commits c JOIN log_partitions p ON p.topic = c.topic AND p.partition_index = c.partition_index
                    """)
                {
                    guard let group = row.string(at: 0), let topic = row.string(at: 1),
                        let partition = row.int(at: 2), let messages = row.int(at: 3)
                    else { continue }
                    lag[group, default: [:]][TopicPartition(topic: topic, partition: Int32(partition))] = Int64(
                        messages)
                }
                return lag
            }
        }
    }

    /// The next offset to read committed under `groupID` for `topicPartition`, if any.
    /// - Throws: ``MessageLogError`` (`unavailable`) when the database cannot be read.
    public func committedOffset(groupID: String, topicPartition: TopicPartition) async throws -> Int64? {
        try await committedOffsets(groupID: groupID, [topicPartition])[topicPartition]
    }

    func committedOffsets(groupID: String, _ partitions: [TopicPartition]) async throws -> [TopicPartition: Int64] {
        try await guarded {
            try await self.database.read { db in
                try Self.committedOffsets(db, groupID: groupID, partitions)
            }
        }
    }

    static func committedOffsets(_ db: SQLiteConnection, groupID: String, _ partitions: [TopicPartition])
        throws -> [TopicPartition: Int64]
    {
        var offsets: [TopicPartition: Int64] = [:]
        for topicPartition in partitions {
            if let offset = try db.query(
                "SELECT next_offset FROM log_commits WHERE group_id = ? AND topic = ? AND partition_index = ?",
                [.text(groupID), .text(topicPartition.topic), .integer(Int64(topicPartition.partition))]
            ).first?.int64("next_offset") {
                offsets[topicPartition] = offset
            }
        }
        return offsets
    }

    /// A group member's claim, checked in the commit's own transaction.
    struct Fence: Sendable {
        var member: String
        var generation: Int64
    }

    /// Moves the committed offsets (next offset to read) of `groupID` forward; an offset at or
    /// below the stored one is ignored. With `fence`, nothing is written unless that member still
    /// holds that generation of the group's lease.
    /// - Returns: Whether the commit was applied (`false`: fenced off).
    @discardableResult
    func commit(groupID: String, offsets: [TopicPartition: Int64], fence: Fence?) async throws -> Bool {
        let now = Date().millisecondsSince1970
        return try await guarded {
            try await self.database.write { db in
                if let fence {
                    let holds = try db.query(
                        "SELECT 1 AS held FROM log_group_leases WHERE group_id = ? AND owner = ? AND generation = ?",
                        [.text(groupID), .text(fence.member), .integer(fence.generation)])
                    if holds.isEmpty { return false }
                }
                for (topicPartition, offset) in offsets {
                    try db.query(
                        """
                        INSERT INTO log_commits (group_id, topic, partition_index, next_offset, committed_at)
                        VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT (group_id, topic, partition_index) DO UPDATE
                        SET next_offset = excluded.next_offset, committed_at = excluded.committed_at
                        WHERE excluded.next_offset > log_commits.next_offset
                        """,
                        [
                            .text(groupID), .text(topicPartition.topic), .integer(Int64(topicPartition.partition)),
                            .integer(offset), .integer(now),
                        ])
                }
                return true
            }
        }
    }

    /// SQLite's own errors become ``MessageLogError`` (`unavailable`).
    func guarded<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SQLiteError {
            throw MessageLogError(.unavailable, "the message log failed: \(error.message)")
        }
    }
}
