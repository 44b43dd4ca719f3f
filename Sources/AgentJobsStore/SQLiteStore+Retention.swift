import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Retention

extension SQLiteStore {
    public func deleteEndedRuns(before cutoff: Date, keepPerJob: Int, after cursor: RunRetentionCursor?, limit: Int)
        async throws -> RunRetentionBatch
    {
        let limit = max(1, limit)
        let keep = max(0, keepPerJob)
        return try await write { db in
            // The scan walks runs_by_queued_at (queued_at, then the rowid seq) from the cursor, so a
            // batch costs `limit` rows whatever the history holds; the runs kept (active, ended too
            // recently, or among their job's newest) are passed over once per pass.
            let rows = try db.query(
                """
                SELECT r.seq, r.queued_at,
                    r.finished_at IS NOT NULL AND r.finished_at < ?1 AND (
                        ?5 = 0
                        OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = r.job_id)
                        OR r.seq < COALESCE((
                            SELECT k.seq FROM runs k WHERE k.job_id = r.job_id
                            ORDER BY k.seq DESC LIMIT 1 OFFSET ?5 - 1), -1)
                    ) AS due
                FROM runs r
                WHERE r.queued_at < ?1 AND (r.queued_at, r.seq) > (?2, ?3)
                ORDER BY r.queued_at, r.seq LIMIT ?4
                """,
                [
                    .date(cutoff), .integer(cursor?.queuedAtMilliseconds ?? .min), .integer(cursor?.sequence ?? .min),
                    .int(limit), .int(keep),
                ])
            let due = rows.filter { $0.int("due") == 1 }.compactMap { $0.int64("seq") }
            var deleted = 0
            for chunk in stride(from: 0, to: due.count, by: 500) {
                let part = due[chunk..<min(chunk + 500, due.count)]
                try db.execute(
                    "DELETE FROM runs WHERE seq IN (" + part.map { _ in "?" }.joined(separator: ", ") + ")",
                    part.map { .integer($0) })
                deleted += db.changes
            }
            var next: RunRetentionCursor?
            if rows.count == limit, let last = rows.last, let queuedAt = last.int64("queued_at"),
                let sequence = last.int64("seq")
            {
                next = RunRetentionCursor(queuedAtMilliseconds: queuedAt, sequence: sequence)
            }
            return RunRetentionBatch(deleted: deleted, next: next)
        }
    }

    public func deleteScheduleOccurrences(recordedBefore cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            try db.execute(
                """
                DELETE FROM schedule_occurrences WHERE rowid IN (
                    SELECT rowid FROM schedule_occurrences WHERE recorded_at < ?1 ORDER BY recorded_at LIMIT ?2)
                """,
                [.date(cutoff), .int(max(0, limit))])
            return db.changes
        }
    }
}
