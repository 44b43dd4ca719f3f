import AgentJobsCore
import AgentJobsSQLite
import Dispatch
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension SQLiteMessageLog {
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
                    .first.map { row in
                        guard let owner = row.string("owner"), let expiresAt = row.int64("expires_at") else {
                            throw MessageLogError.corrupt("log_group_leases", "owner or expires_at", of: groupID)
                        }
                        return (owner: owner, expiresAt: expiresAt)
                    }
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
                guard let owner = row.string("owner"), let generation = row.int64("generation"),
                    let expires = row.int64("expires_at")
                else {
                    throw MessageLogError.corrupt("log_group_leases", "owner, generation or expires_at", of: groupID)
                }
                guard owner == member else { return .held(until: expires) }
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

}
