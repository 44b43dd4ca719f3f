import AgentJobsCore
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
    private let partitionCounts = Mutex<[String: Int32]>([:])
    private let roundRobin = Atomic<Int>(0)
    private let ownsDatabase: Bool

    /// A log in the database of `store` (the same file and connections, the same writer queue).
    /// - Parameters:
    ///   - store: The embedded store; its schema already contains the log tables.
    ///   - configuration: Partitioning settings.
    public init(store: SQLiteStore, configuration: SQLiteMessageLogConfiguration = .init()) {
        self.database = store.database
        self.configuration = configuration
        self.ownsDatabase = false
    }

    /// Opens (creating if needed) the database at `path` on its own, for a process that needs the
    /// log but not the store. Pending migrations are applied, as ``SQLiteStore`` would.
    /// - Parameters:
    ///   - path: The database file; its directory must exist.
    ///   - durableCommits: `true` fsyncs every commit; `false` survives process crashes only.
    ///   - configuration: Partitioning settings.
    /// - Throws: ``StoreError`` with code `unavailable` when the file cannot be opened or migrated.
    public convenience init(
        path: String, durableCommits: Bool = true, configuration: SQLiteMessageLogConfiguration = .init()
    ) throws {
        let database: SQLiteDatabase
        do {
            database = try SQLiteDatabase(
                path: path, durability: durableCommits ? .full : .normal, migrations: SQLiteSchema.migrations)
        } catch let error as SQLiteError {
            throw StoreError(.unavailable, "cannot open the SQLite database at \(path): \(error.message)")
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
    /// - Throws: ``StoreError`` (`unavailable`) when the database refuses the write.
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
    /// - Throws: ``StoreError`` (`unavailable`) when the database cannot be read.
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
    /// - Throws: ``StoreError`` (`unavailable`) when the database cannot be read.
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
        let existing = try db.query("SELECT partition_count FROM log_topics WHERE name = ?", [.text(topic)]).first?
            .int64("partition_count")
        return Int32(clamping: existing ?? Int64(partitionCount))
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
                        throw StoreError(
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
                            throw StoreError(.unavailable, "the message log has no partition \(topicPartition)")
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
                        let offset = row.int64(at: 0) ?? 0
                        let key = row.value(at: 1)
                        result.messages.append(
                            IncomingMessage(
                                topic: topic, partition: request.topicPartition.partition, offset: offset,
                                key: key == .null ? nil : key.bytes,
                                value: row.value(at: 2).bytes ?? [],
                                headers: row.value(at: 3).bytes.map(HeaderCodec.decode) ?? [],
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
                        let end =
                            try db.query(
                                "SELECT next_offset FROM log_partitions WHERE topic = ? AND partition_index = ?",
                                [.text(topic), .integer(partition)]
                            ).first?.int64("next_offset") ?? request.from
                        result.advancedTo[request.topicPartition] = max(request.from, end)
                    }
                }
                return result
            }
        }
    }

    // MARK: Commits

    /// The next offset to read committed under `groupID` for `topicPartition`, if any.
    /// - Throws: ``StoreError`` (`unavailable`) when the database cannot be read.
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

    private static func committedOffsets(_ db: SQLiteConnection, groupID: String, _ partitions: [TopicPartition])
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

    // MARK: Group leases

    /// The outcome of trying to take a group's lease.
    enum LeaseAttempt: Sendable {
        /// This member owns the group: every partition of its topics, from these positions
        /// (next offset to read).
        case acquired(generation: Int64, positions: [TopicPartition: Int64])
        /// Another member holds it until this time (milliseconds since 1970).
        case held(until: Int64)
    }

    /// Takes the lease of `groupID` when it is free, expired or already this member's, then
    /// returns the group's partitions and committed positions (creating missing topics).
    func acquireLease(groupID: String, topics: [String], member: String, duration: Duration) async throws
        -> LeaseAttempt
    {
        let now = Date().millisecondsSince1970
        // A read first: standbys poll, and a held lease should not cost a write transaction.
        let current = try await guarded {
            try await self.database.read { db in
                try db.query("SELECT owner, expires_at FROM log_group_leases WHERE group_id = ?", [.text(groupID)])
                    .first.map { (owner: $0.string("owner") ?? "", expiresAt: $0.int64("expires_at") ?? 0) }
            }
        }
        if let current, current.owner != member, current.expiresAt > now {
            return .held(until: current.expiresAt)
        }
        let expiresAt = now + duration.millisecondCount
        let defaultCount = configuration.defaultPartitionCount
        let attempt = try await guarded {
            try await self.database.write { db -> LeaseAttempt in
                try db.query(
                    """
                    INSERT INTO log_group_leases (group_id, owner, generation, expires_at) VALUES (?, ?, 1, ?)
                    ON CONFLICT (group_id) DO UPDATE
                    SET owner = excluded.owner, generation = log_group_leases.generation + 1,
                        expires_at = excluded.expires_at
                    WHERE log_group_leases.expires_at <= ? AND log_group_leases.owner <> excluded.owner
                    """,
                    [.text(groupID), .text(member), .integer(expiresAt), .integer(now)])
                guard
                    let row = try db.query(
                        "SELECT owner, generation, expires_at FROM log_group_leases WHERE group_id = ?",
                        [.text(groupID)]
                    ).first
                else { return .held(until: now) }
                guard row.string("owner") == member, let generation = row.int64("generation") else {
                    return .held(until: row.int64("expires_at") ?? now)
                }
                // Our own unexpired lease (kept across a failed renewal): extend it.
                try db.query(
                    "UPDATE log_group_leases SET expires_at = ? WHERE group_id = ? AND owner = ?",
                    [.integer(expiresAt), .text(groupID), .text(member)])
                var partitions: [TopicPartition] = []
                for topic in topics {
                    let count = try Self.ensureTopic(db, topic, partitionCount: defaultCount, now: now)
                    partitions += (0..<count).map { TopicPartition(topic: topic, partition: $0) }
                }
                let committed = try Self.committedOffsets(db, groupID: groupID, partitions)
                var positions: [TopicPartition: Int64] = [:]
                for partition in partitions { positions[partition] = committed[partition] ?? 0 }
                return .acquired(generation: generation, positions: positions)
            }
        }
        if case .acquired(_, let positions) = attempt {
            partitionCounts.withLock { counts in
                for partition in positions.keys {
                    counts[partition.topic] = max(counts[partition.topic] ?? 0, partition.partition + 1)
                }
            }
        }
        return attempt
    }

    /// Extends this member's lease; `false` when it lost it (another member took over).
    func renewLease(groupID: String, member: String, generation: Int64, duration: Duration) async throws -> Bool {
        let expiresAt = Date().millisecondsSince1970 + duration.millisecondCount
        return try await guarded {
            try await self.database.write { db in
                try db.query(
                    "UPDATE log_group_leases SET expires_at = ? WHERE group_id = ? AND owner = ? AND generation = ?",
                    [.integer(expiresAt), .text(groupID), .text(member), .integer(generation)])
                return db.changes == 1
            }
        }
    }

    /// Gives the lease up (it expires now) so that a standby takes over without waiting, and
    /// wakes the standbys of this process.
    func releaseLease(groupID: String, member: String, generation: Int64) async throws {
        try await guarded {
            try await self.database.write { db -> Void in
                try db.query(
                    "UPDATE log_group_leases SET expires_at = 0 WHERE group_id = ? AND owner = ? AND generation = ?",
                    [.text(groupID), .text(member), .integer(generation)])
            }
        }
        signal.signalAll()
    }

    // MARK: Retention

    /// Deletes messages appended more than `age` ago that every group committed past.
    ///
    /// In a partition where at least one group committed a position, a message goes only once
    /// it is older than `age` *and* every such group's committed position is beyond it, so a
    /// lagging orchestrator or aggregator never loses its backlog. In a partition where no
    /// group ever committed (e.g. a topic only read by external downstream systems), age alone
    /// decides, like Kafka's `retention.ms`. A group that is gone for good keeps holding its
    /// partitions back until its rows in `log_commits` are deleted. Offsets stay dense: new
    /// messages continue after the deleted ones. Each partition is pruned in its own
    /// transaction so that the writer queue is never held for long; call it periodically.
    /// - Parameters:
    ///   - age: How long messages are kept at least.
    ///   - now: The current time (tests pass a fixed one).
    /// - Returns: The number of messages deleted.
    /// - Throws: ``StoreError`` (`unavailable`) when the database refuses the deletion.
    @discardableResult
    public func deleteMessages(olderThan age: Duration, now: Date = Date()) async throws -> Int {
        let cutoff = now.millisecondsSince1970 - age.millisecondCount
        let floors = try await guarded {
            try await self.database.read { db in
                try db.query(
                    """
                    SELECT p.topic, p.partition_index,
                        (SELECT MIN(c.next_offset) FROM log_commits c
                         WHERE c.topic = p.topic AND c.partition_index = p.partition_index) AS floor
                    FROM log_partitions p
                    """
                ).map { row in
                    (
                        topic: row.string("topic") ?? "", partition: row.int64("partition_index") ?? 0,
                        floor: row.int64("floor")
                    )
                }
            }
        }
        var deleted = 0
        for entry in floors {
            deleted += try await guarded {
                try await self.database.write { db in
                    // The floor is read again inside the transaction: a group may have committed since.
                    let floor =
                        try db.query(
                            "SELECT MIN(next_offset) AS floor FROM log_commits WHERE topic = ? AND partition_index = ?",
                            [.text(entry.topic), .integer(entry.partition)]
                        ).first?.int64("floor") ?? Int64.max
                    try db.query(
                        """
                        DELETE FROM log_messages
                        WHERE topic = ? AND partition_index = ? AND message_offset < ? AND appended_at < ?
                        """,
                        [.text(entry.topic), .integer(entry.partition), .integer(floor), .integer(cutoff)])
                    return db.changes
                }
            }
        }
        return deleted
    }

    /// SQLite's own errors become ``StoreError`` (`unavailable`), as in ``SQLiteStore``.
    private func guarded<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SQLiteError {
            throw StoreError(.unavailable, "the message log failed: \(error.message)")
        }
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    var millisecondCount: Int64 {
        let parts = components
        return parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000
    }
}

/// Headers as a blob: per header a 4-byte big-endian name length and the name, then a 4-byte
/// big-endian value length (-1 for a header without a value) and the value. Order and repeated
/// names are kept.
enum HeaderCodec {
    static func encode(_ headers: [MessageHeader]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headers.reduce(0) { $0 + 8 + $1.key.utf8.count + ($1.value?.count ?? 0) })
        func append(_ length: Int32) {
            let value = UInt32(bitPattern: length)
            bytes.append(UInt8(truncatingIfNeeded: value >> 24))
            bytes.append(UInt8(truncatingIfNeeded: value >> 16))
            bytes.append(UInt8(truncatingIfNeeded: value >> 8))
            bytes.append(UInt8(truncatingIfNeeded: value))
        }
        for header in headers {
            append(Int32(clamping: header.key.utf8.count))
            bytes.append(contentsOf: header.key.utf8)
            if let value = header.value {
                append(Int32(clamping: value.count))
                bytes += value
            } else {
                append(-1)
            }
        }
        return bytes
    }

    /// Decodes what ``encode(_:)`` wrote; a truncated blob yields the headers before the damage.
    static func decode(_ bytes: [UInt8]) -> [MessageHeader] {
        var headers: [MessageHeader] = []
        var index = 0
        func length() -> Int32? {
            guard index + 4 <= bytes.count else { return nil }
            let value = bytes[index..<index + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            index += 4
            return Int32(bitPattern: value)
        }
        while index < bytes.count {
            guard let nameLength = length(), nameLength >= 0, index + Int(nameLength) <= bytes.count else { break }
            let name = String(decoding: bytes[index..<index + Int(nameLength)], as: UTF8.self)
            index += Int(nameLength)
            guard let valueLength = length() else { break }
            if valueLength < 0 {
                headers.append(MessageHeader(key: name, value: nil))
            } else {
                guard index + Int(valueLength) <= bytes.count else { break }
                headers.append(MessageHeader(key: name, value: Array(bytes[index..<index + Int(valueLength)])))
                index += Int(valueLength)
            }
        }
        return headers
    }
}

/// The partitions one commit appended to, with the keys of the messages in each.
struct AppendedMessages: Sendable {
    private(set) var keysByPartition: [TopicPartition: Set<[UInt8]>] = [:]

    mutating func add(_ topicPartition: TopicPartition, key: [UInt8]?) {
        // A message without a key still marks its partition (consumers without a key filter read it).
        keysByPartition[topicPartition, default: []].formUnion(key.map { [$0] } ?? [])
    }

    /// Whether a consumer with `interest` can receive any of these messages.
    func concern(_ interest: MessageLogInterest) -> Bool {
        switch interest {
        case .partitions(let partitions, let keyFilter):
            return partitions.contains { partition in
                guard let keys = keysByPartition[partition] else { return false }
                // A key-filtered fetch returns only that key, so other keys would wake it for nothing.
                return keyFilter.map(keys.contains) ?? true
            }
        case .topics(let topics):
            return keysByPartition.keys.contains { topics.contains($0.topic) }
        }
    }
}

/// What a consumer of the log reads, so that a commit wakes only the consumers it concerns.
enum MessageLogInterest: Sendable, Hashable {
    /// A manual assignment of these partitions, optionally only messages with this key.
    case partitions(Set<TopicPartition>, keyFilter: [UInt8]?)
    /// Every partition of these topics (a group member).
    case topics(Set<String>)
}

/// Wakes the consumers of one ``SQLiteMessageLog`` in this process when something they may wait
/// for was committed: new messages in what they read, or a released group lease.
///
/// Wake-ups are targeted: in the embedded shape one process holds the aggregator and, with
/// `dev`, every host's dispatch consumer (the end-to-end benchmark: 100), and waking all of them
/// on every commit cost one fetch query per consumer per commit on the shared reader connections.
final class MessageLogSignal: Sendable {
    private struct Subscriber: Sendable {
        var wakeup: Wakeup
        var interest: MessageLogInterest
    }

    private let subscribers = Mutex<[ObjectIdentifier: Subscriber]>([:])

    func subscribe(_ wakeup: Wakeup, interest: MessageLogInterest) {
        subscribers.withLock { $0[ObjectIdentifier(wakeup)] = Subscriber(wakeup: wakeup, interest: interest) }
    }

    func unsubscribe(_ wakeup: Wakeup) {
        _ = subscribers.withLock { $0.removeValue(forKey: ObjectIdentifier(wakeup)) }
    }

    /// Wakes the consumers that can receive any of `appended`.
    func signal(_ appended: AppendedMessages) {
        let concerned = subscribers.withLock { subscribers in
            subscribers.values.filter { appended.concern($0.interest) }.map(\.wakeup)
        }
        for wakeup in concerned { wakeup.wake() }
    }

    /// Wakes every consumer (a group lease was released: a standby may take over).
    func signalAll() {
        for wakeup in subscribers.withLock({ $0.values.map(\.wakeup) }) {
            wakeup.wake()
        }
    }
}

/// A one-slot wake-up for a loop that sleeps until something happens or a timeout passes.
///
/// A ``wake()`` while nobody waits is remembered, so a signal that arrives between checking for
/// work and going to sleep is never lost (the next ``wait(timeout:)`` returns at once).
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        var token: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Whether a ``wake()`` is remembered for the next ``wait(timeout:)`` (for tests).
    var isPending: Bool { state.withLock { $0.pending } }

    func wake() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns after a ``wake()`` (also one that came before this call) or after `timeout`.
    func wait(timeout: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let token = state.withLock { state -> UInt64? in
                if state.pending {
                    state.pending = false
                    return nil
                }
                state.token &+= 1
                state.waiter = continuation
                return state.token
            }
            guard let token else {
                continuation.resume()
                return
            }
            let nanoseconds = max(Int(clamping: timeout.millisecondCount), 1) * 1_000_000
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) {
                let expired = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                    guard state.token == token, let waiter = state.waiter else { return nil }
                    state.waiter = nil
                    return waiter
                }
                expired?.resume()
            }
        }
    }
}
