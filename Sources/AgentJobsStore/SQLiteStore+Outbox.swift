import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Outbox

extension SQLiteStore {
    /// One process owns a SQLite store, and its relay publishes every shard.
    public func leaseOutboxShards(replica: String, duration: Duration) async throws -> OutboxLease {
        OutboxLease(shards: .all, duration: nil, replicas: 1)
    }

    public func releaseOutboxShards(replica: String) async throws {}

    public func outboxBacklog() async throws -> OutboxBacklog {
        try await read { db in
            let unsent = try db.query("SELECT count(*) AS n FROM outbox_unsent").first?.int("n") ?? 0
            let oldest = try db.query(
                "SELECT o.created_at FROM outbox_unsent u JOIN outbox o ON o.seq = u.seq ORDER BY u.seq LIMIT 1"
            ).first?.date(at: 0)
            return OutboxBacklog(unsent: unsent, oldestWrittenAt: oldest)
        }
    }

    /// Every row whatever `shards` says: a SQLite store's relay holds them all.
    public func pendingOutbox(after sequence: Int64, limit: Int, shards: OutboxShards) async throws -> [OutboxMessage] {
        try await read { db in
            var messages: [OutboxMessage] = []
            messages.reserveCapacity(limit)
            try db.forEachRow(
                """
                SELECT o.seq, o.topic, o.key, o.run_id, o.type, p.payload, o.created_at, o.trace_parent
                FROM outbox_unsent u JOIN outbox o ON o.seq = u.seq JOIN outbox_payloads p ON p.seq = u.seq
                WHERE u.seq > ? ORDER BY u.seq LIMIT ?
                """,
                [.integer(sequence), .int(limit)]
            ) { row in
                let stored = try StoredRow("outbox", id: row.int64(at: 0).map { String($0) })
                messages.append(
                    OutboxMessage(
                        sequence: try stored.value(row.int64(at: 0), "seq"),
                        topic: try stored.value(row.string(at: 1, usually: Self.outboxTopics), "topic"),
                        key: try stored.value(row.string(at: 2), "key"), runId: row.string(at: 3),
                        type: try stored.value(row.string(at: 4, usually: Self.outboxTypes), "type"),
                        payload: try stored.value(row.value(at: 5).bytes, "payload"),
                        createdAt: try stored.value(row.date(at: 6), "created_at"),
                        traceParent: TraceParent.validated(row.string(at: 7))))
            }
            return messages
        }
    }

    // What outbox rows hold (read without allocating them again for every row).
    static let outboxTopics = [Topic.dispatch]
    static let outboxTypes = [RunDispatch.type, RunCancel.type]

    public func markOutboxSent(sequences: [Int64]) async throws {
        guard !sequences.isEmpty else { return }
        let sorted = sequences.sorted()
        try await write { db in
            // One statement per run of consecutive sequences (a relay pass is mostly one run).
            var start = sorted.startIndex
            while start < sorted.endIndex {
                var end = start + 1
                while end < sorted.endIndex, sorted[end] <= sorted[end - 1] + 1 { end += 1 }
                try db.execute(
                    "DELETE FROM outbox_unsent WHERE seq BETWEEN ? AND ?",
                    [.integer(sorted[start]), .integer(sorted[end - 1])])
                start = end
            }
        }
    }

    public func deleteSentOutbox(writtenBefore cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            // Rows are written in sequence order, so the rows written before the cutoff are those
            // before the first one written after it: the scan stops there instead of reading the
            // whole outbox. The delete trigger takes the payloads along.
            try db.execute(
                """
                DELETE FROM outbox WHERE seq IN (
                    SELECT o.seq FROM outbox o
                    WHERE o.seq < (SELECT COALESCE(MIN(seq), 9223372036854775807) FROM outbox WHERE created_at >= ?1)
                    AND NOT EXISTS (SELECT 1 FROM outbox_unsent u WHERE u.seq = o.seq)
                    ORDER BY o.seq LIMIT ?2)
                """,
                [.date(cutoff), .int(max(0, limit))])
            return db.changes
        }
    }
}
