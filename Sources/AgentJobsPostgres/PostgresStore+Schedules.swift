import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Schedules

extension PostgresStore {
    public func dueSchedules(now: Date, limit: Int) async throws -> [DueSchedule] {
        try await read { db in
            try await db.query(
                """
                \(unescaped: Self.jobSelect)
                WHERE j.schedule_due_at IS NOT NULL AND j.schedule_due_at <= \(StoredTime.ms(now))
                ORDER BY j.schedule_due_at LIMIT \(max(0, limit))
                """
            ).compactMap { row -> DueSchedule? in
                let record = try Self.jobRecord(row)
                return record.scheduleState.map { DueSchedule(job: record.job, state: $0) }
            }
        }
    }

    public func recordOccurrences(
        jobId: String, expectedCursor: Date, decisions: [OccurrenceDecision], newState: ScheduleState, now: Date,
        traceParent: String?
    ) async throws -> [ScheduleOccurrence] {
        let recorded = try await write { db -> [ScheduleOccurrence] in
            // The compare-and-set on the cursor runs under the job row's lock: of several scheduler
            // replicas acting on one occurrence, the first commits and moves the cursor, the others
            // wait for the lock, then read the moved cursor and record nothing.
            guard try await Self.lockJob(jobId, exclusive: true, db),
                let record = try await Self.jobRecord(id: jobId, db),
                record.job.schedule != nil, record.scheduleState?.cursor == expectedCursor
            else { return [] }
            var recorded: [ScheduleOccurrence] = []
            for decision in decisions {
                var occurrence = ScheduleOccurrence(
                    jobId: jobId, scheduledAt: decision.scheduledAt, outcome: .missed, reason: decision.reason,
                    recordedAt: now)
                let seen = try await db.query(
                    """
                    SELECT 1 FROM schedule_occurrences
                    WHERE job_id = \(jobId) AND scheduled_at = \(StoredTime.ms(decision.scheduledAt))
                    """)
                guard seen.isEmpty else { continue }
                if decision.action == .start {
                    if let active = try await Self.activeRunId(jobId: jobId, db) {
                        occurrence.outcome = .skipped
                        occurrence.activeRunId = active
                        occurrence.reason = "the previous run \(active) was still active"
                    } else {
                        let run = try await Self.trigger(
                            record.job, trigger: .schedule, scheduledAt: decision.scheduledAt, now: now,
                            traceParent: traceParent, db)
                        occurrence.outcome = .started
                        occurrence.runId = run.id
                    }
                }
                try await db.query(
                    """
                    INSERT INTO schedule_occurrences (job_id, scheduled_at, outcome, run_id, active_run_id, reason,
                                                      recorded_at)
                    VALUES (\(jobId), \(StoredTime.ms(occurrence.scheduledAt)), \(occurrence.outcome.rawValue),
                            \(occurrence.runId), \(occurrence.activeRunId), \(occurrence.reason), \(StoredTime.ms(now)))
                    """)
                recorded.append(occurrence)
            }
            try await db.query(
                """
                UPDATE jobs SET schedule_cursor = \(StoredTime.ms(newState.cursor)),
                    next_occurrence_at = \(StoredTime.ms(newState.nextOccurrence)),
                    schedule_due_at = \(StoredTime.ms(newState.dueAt))
                WHERE id = \(jobId)
                """)
            return recorded
        }
        if recorded.contains(where: { $0.runId != nil }) { outboxAppended() }
        return recorded
    }

    public func scheduleOccurrences(jobId: String, limit: Int) async throws -> [ScheduleOccurrence] {
        try await read { db in
            try await db.query(
                """
                SELECT * FROM schedule_occurrences WHERE job_id = \(jobId)
                ORDER BY scheduled_at DESC LIMIT \(max(0, limit))
                """
            ).map { try Self.occurrence($0, jobId: jobId) }
        }
    }
}
