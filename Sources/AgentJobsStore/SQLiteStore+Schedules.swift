import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Schedules

extension SQLiteStore {
    public func dueSchedules(now: Date, limit: Int) async throws -> [DueSchedule] {
        try await read { db in
            try db.query(
                Self.jobSelect
                    + " WHERE j.schedule_due_at IS NOT NULL AND j.schedule_due_at <= ? ORDER BY j.schedule_due_at LIMIT ?",
                [.date(now), .int(limit)]
            ).compactMap { row in
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
            guard
                let record = try db.query(Self.jobSelect + " WHERE j.id = ?", [.text(jobId)]).first.map(Self.jobRecord),
                record.job.schedule != nil, record.scheduleState?.cursor == expectedCursor
            else { return [] }
            var recorded: [ScheduleOccurrence] = []
            for decision in decisions {
                var occurrence = ScheduleOccurrence(
                    jobId: jobId, scheduledAt: decision.scheduledAt, outcome: .missed, reason: decision.reason,
                    recordedAt: now)
                let seen = try db.query(
                    "SELECT 1 FROM schedule_occurrences WHERE job_id = ? AND scheduled_at = ?",
                    [.text(jobId), .date(decision.scheduledAt)])
                guard seen.isEmpty else { continue }
                if decision.action == .start {
                    if let active = try Self.activeRunId(jobId: jobId, db) {
                        occurrence.outcome = .skipped
                        occurrence.activeRunId = active
                        occurrence.reason = "the previous run \(active) was still active"
                    } else {
                        let run = try Self.trigger(
                            record.job, trigger: .schedule, scheduledAt: decision.scheduledAt, now: now,
                            traceParent: traceParent, db)
                        occurrence.outcome = .started
                        occurrence.runId = run.id
                    }
                }
                try db.query(
                    """
                    INSERT INTO schedule_occurrences (job_id, scheduled_at, outcome, run_id, active_run_id, reason, recorded_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        .text(jobId), .date(occurrence.scheduledAt), .text(occurrence.outcome.rawValue),
                        .optionalText(occurrence.runId), .optionalText(occurrence.activeRunId),
                        .optionalText(occurrence.reason),
                        .date(now),
                    ])
                recorded.append(occurrence)
            }
            try db.query(
                "UPDATE jobs SET schedule_cursor = ?, next_occurrence_at = ?, schedule_due_at = ? WHERE id = ?",
                [
                    .date(newState.cursor), .optionalDate(newState.nextOccurrence), .optionalDate(newState.dueAt),
                    .text(jobId),
                ])
            return recorded
        }
        if recorded.contains(where: { $0.runId != nil }) { outboxAppended() }
        return recorded
    }

    public func scheduleOccurrences(jobId: String, limit: Int) async throws -> [ScheduleOccurrence] {
        try await read { db in
            try db.query(
                "SELECT * FROM schedule_occurrences WHERE job_id = ? ORDER BY scheduled_at DESC LIMIT ?",
                [.text(jobId), .int(limit)]
            ).map { row in
                let stored = try StoredRow(
                    "schedule_occurrences", id: "\(jobId) at \(row.int64("scheduled_at").map(String.init) ?? "?")")
                return ScheduleOccurrence(
                    jobId: jobId, scheduledAt: try stored.value(row.date("scheduled_at"), "scheduled_at"),
                    outcome: try stored.known(row.string("outcome"), "outcome"),
                    runId: row.string("run_id"), activeRunId: row.string("active_run_id"), reason: row.string("reason"),
                    recordedAt: try stored.value(row.date("recorded_at"), "recorded_at"))
            }
        }
    }
}
