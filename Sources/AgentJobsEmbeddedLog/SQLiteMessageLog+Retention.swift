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
    /// - Throws: ``MessageLogError`` (`unavailable`) when the database refuses the deletion.
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
                    guard let topic = row.string("topic"), let partition = row.int64("partition_index") else {
                        throw MessageLogError.corrupt("log_partitions", "topic or partition_index", of: "a partition")
                    }
                    // No floor: no group has committed in this partition.
                    return (topic: topic, partition: partition, floor: row.int64("floor"))
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
}
