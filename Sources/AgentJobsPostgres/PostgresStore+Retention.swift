import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Retention

extension PostgresStore {
    public func deleteEndedRuns(before cutoff: Date, keepPerJob: Int, after cursor: RunRetentionCursor?, limit: Int)
        async throws -> RunRetentionBatch
    {
        let limit = max(1, limit)
        let keep = max(0, keepPerJob)
        let cutoffMs = StoredTime.ms(cutoff)
        let afterQueuedAt = cursor?.queuedAtMilliseconds ?? .min
        let afterSequence = cursor?.sequence ?? .min
        return try await write { db in
            // The scan walks runs_by_queued_at from the cursor, so a batch costs `limit` rows whatever
            // the history holds; the runs kept (active, ended too recently, or among their job's
            // newest) are passed over once per pass. Several replicas may prune at once: a run
            // another one deleted first is simply not deleted twice.
            let rows = try await db.query(
                """
                SELECT r.seq, r.queued_at,
                    r.finished_at IS NOT NULL AND r.finished_at < \(cutoffMs) AND (
                        \(keep) = 0
                        OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = r.job_id)
                        OR r.seq < COALESCE((
                            SELECT k.seq FROM runs k WHERE k.job_id = r.job_id
                            ORDER BY k.seq DESC LIMIT 1 OFFSET \(max(0, keep - 1))), -1)
                    ) AS due
                FROM runs r
                WHERE r.queued_at < \(cutoffMs) AND r.queued_at >= \(afterQueuedAt)
                    AND (r.queued_at, r.seq) > (\(afterQueuedAt), \(afterSequence))
                ORDER BY r.queued_at, r.seq LIMIT \(limit)
                """)
            var due: [Int64] = []
            var last: RunRetentionCursor?
            for row in rows {
                let (sequence, queuedAt, isDue) = try row.decode((Int64, Int64, Bool).self)
                if isDue { due.append(sequence) }
                last = RunRetentionCursor(queuedAtMilliseconds: queuedAt, sequence: sequence)
            }
            // Counted as deleted here, not as found due: another replica may have got there first.
            let deleted =
                due.isEmpty
                ? 0 : try await db.query("DELETE FROM runs WHERE seq = ANY(\(due.sorted())) RETURNING seq").count
            return RunRetentionBatch(deleted: deleted, next: rows.count == limit ? last : nil)
        }
    }

    public func deleteScheduleOccurrences(recordedBefore cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            try await db.query(
                """
                DELETE FROM schedule_occurrences WHERE (job_id, scheduled_at) IN (
                    SELECT job_id, scheduled_at FROM schedule_occurrences
                    WHERE recorded_at < \(StoredTime.ms(cutoff)) ORDER BY recorded_at LIMIT \(max(0, limit)))
                RETURNING 1
                """
            ).count
        }
    }
}
