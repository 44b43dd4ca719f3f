import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Outbox

extension PostgresStore {
    /// Unsent outbox messages after `sequence`, in sequence order.
    ///
    /// Sequences are drawn when a row is written, and transactions may commit out of that order, so
    /// a row can appear behind a higher one already read; the relay starts every pass from the
    /// oldest unsent row, which finds it. (Rows of one run are written by transactions that follow
    /// one another, so their order holds.)
    public func pendingOutbox(after sequence: Int64, limit: Int) async throws -> [OutboxMessage] {
        try await read { db in
            try await db.query(
                """
                SELECT o.seq, o.topic, o.key, o.run_id, o.type, p.payload, o.created_at
                FROM outbox_unsent u JOIN outbox o ON o.seq = u.seq JOIN outbox_payloads p ON p.seq = u.seq
                WHERE u.seq > \(sequence) ORDER BY u.seq LIMIT \(max(0, limit))
                """
            ).map { try Self.outboxMessage($0) }
        }
    }

    public func markOutboxSent(sequences: [Int64]) async throws {
        guard !sequences.isEmpty else { return }
        try await write { db in
            try await db.query("DELETE FROM outbox_unsent WHERE seq = ANY(\(sequences.sorted()))")
        }
    }

    public func deleteSentOutbox(writtenBefore cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            // Rows are written in sequence order, so the rows written before the cutoff are those
            // before the first one written after it: the scan stops there instead of reading the
            // whole outbox. The foreign keys' `ON DELETE CASCADE` take the payloads along.
            try await db.query(
                """
                DELETE FROM outbox WHERE seq IN (
                    SELECT o.seq FROM outbox o
                    WHERE o.seq < (
                        SELECT COALESCE(MIN(seq), 9223372036854775807) FROM outbox
                        WHERE created_at >= \(StoredTime.ms(cutoff)))
                    AND NOT EXISTS (SELECT 1 FROM outbox_unsent u WHERE u.seq = o.seq)
                    ORDER BY o.seq LIMIT \(max(0, limit)))
                RETURNING seq
                """
            ).count
        }
    }
}
