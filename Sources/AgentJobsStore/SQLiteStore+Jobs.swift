import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Jobs

extension SQLiteStore {
    public func createJob(_ definition: JobDefinition, by actor: RunRequester?, now: Date) async throws -> Job {
        let job = Job(
            id: Identifier.make("job"), name: definition.name, hostId: definition.hostId,
            agentType: definition.agentType,
            parameters: definition.parameters, schedule: definition.schedule, timeoutSeconds: definition.timeoutSeconds,
            queueTimeoutSeconds: definition.queueTimeoutSeconds, retry: definition.retry, version: 1, createdAt: now,
            updatedAt: now)
        let state = definition.schedule.map { SchedulePlanner.initialState(for: $0, jobId: job.id, now: now) }
        return try await write { db in
            try Self.checkHost(db, definition)
            try db.query(
                """
                INSERT INTO jobs (id, name, host_id, agent_type, parameters, timeout_seconds, queue_timeout_seconds, version,
                                  created_at, updated_at, retry_policy)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(job.id), .text(job.name), .text(job.hostId), .text(job.agentType.rawValue),
                    .text(Codec.parameters(job.parameters)), .int(job.timeoutSeconds), .int(job.queueTimeoutSeconds),
                    .int(job.version), .date(now), .date(now), .optionalText(job.retry?.jsonText),
                ])
            try Self.saveSchedule(job.schedule, state: state, jobId: job.id, db)
            try Self.appendAudit(.jobCreated(job, actor: actor, at: now), db)
            return job
        }
    }

    /// Writes a job's schedule definition and state columns.
    static func saveSchedule(
        _ schedule: JobSchedule?, state: ScheduleState?, jobId: String, _ db: SQLiteConnection
    ) throws {
        try db.query(
            """
            UPDATE jobs SET schedule_cron = ?, schedule_timezone = ?, schedule_paused = ?, missed_policy = ?,
                catch_up_window_seconds = ?, jitter_seconds = ?, schedule_cursor = ?, next_occurrence_at = ?, schedule_due_at = ?
            WHERE id = ?
            """,
            [
                .optionalText(schedule?.cron), .optionalText(schedule?.timezone),
                .int(schedule?.paused == true ? 1 : 0),
                .text(schedule?.missedPolicy.rawValue ?? MissedPolicy.latest.rawValue),
                .int(schedule?.catchUpWindowSeconds ?? JobSchedule.defaultCatchUpWindowSeconds),
                .int(schedule?.jitterSeconds ?? 0),
                .optionalDate(state?.cursor), .optionalDate(state?.nextOccurrence), .optionalDate(state?.dueAt),
                .text(jobId),
            ])
    }

    static func checkHost(_ db: SQLiteConnection, _ definition: JobDefinition) throws {
        guard let row = try db.query("SELECT * FROM hosts WHERE id = ?", [.text(definition.hostId)]).first else {
            throw ValidationError(
                field: "hostId", message: "no host with id '\(definition.hostId)'; list hosts with GET /api/v1/hosts")
        }
        try definition.check(against: host(row))
    }

    static let jobSelect = """
        SELECT j.*, \(runColumns.map { "r.\($0) AS r_\($0)" }.joined(separator: ", "))
        FROM jobs j LEFT JOIN runs r ON r.seq = (SELECT max(seq) FROM runs WHERE job_id = j.id)
        """

    public func job(id: String) async throws -> JobRecord? {
        try await read { db in
            try db.query(Self.jobSelect + " WHERE j.id = ?", [.text(id)]).first.map(Self.jobRecord)
        }
    }

    public func listJobs(_ filter: JobFilter, cursor: String?, limit: Int?) async throws -> JobPage {
        var conditions: [String] = []
        var bindings: [SQLiteValue] = []
        for (column, value) in [
            ("j.host_id", filter.hostId), ("j.agent_type", filter.agentType?.rawValue), ("j.name", filter.name),
        ] {
            guard let value else { continue }
            conditions.append("\(column) = ?")
            bindings.append(.text(value))
        }
        if let part = filter.nameContains {
            conditions.append("instr(lower(j.name), lower(?)) > 0")
            bindings.append(.text(part))
        }
        switch filter.lastRun {
        case .status(let status):
            conditions.append("r.status = ?")
            bindings.append(.text(status.rawValue))
        case .never:
            conditions.append("r.id IS NULL")
        case nil:
            break
        }
        // The last run is joined for counting only when it is filtered on: one row per job either way.
        let countSQL =
            (filter.lastRun == nil
                ? "SELECT COUNT(*) AS total FROM jobs j" : "SELECT COUNT(*) AS total FROM (" + Self.jobSelect)
            + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + (filter.lastRun == nil ? "" : ")")
        let countBindings = bindings
        if let cursor {
            guard let sequence = PageCursor.decode(cursor) else { throw PageCursor.malformed }
            conditions.append("j.seq < ?")
            bindings.append(.integer(sequence))
        }
        var sql = Self.jobSelect + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
        sql += " ORDER BY j.seq DESC"
        if let limit {
            sql += " LIMIT ?"
            bindings.append(.int(max(0, limit) + 1))
        }
        return try await read { [sql, bindings] db in
            let total = try db.query(countSQL, countBindings).first?.int("total") ?? 0
            let rows = try db.query(sql, bindings)
            guard let limit, rows.count > limit else {
                return JobPage(jobs: try rows.map(Self.jobRecord), nextCursor: nil, total: total)
            }
            let page = rows.prefix(max(0, limit))
            guard let last = page.last, let sequence = last.int64("seq") else {
                throw StoreError(.corrupt, "jobs: a row has no seq")
            }
            return JobPage(jobs: try page.map(Self.jobRecord), nextCursor: PageCursor.encode(sequence), total: total)
        }
    }

    public func updateJob(
        id: String, expectedVersion: Int, definition: JobDefinition, by actor: RunRequester?, now: Date
    ) async throws -> Job {
        try await write { db in
            guard let current = try db.query(Self.jobSelect + " WHERE j.id = ?", [.text(id)]).first.map(Self.jobRecord)
            else {
                throw StoreError(.notFound, "no job with id \(id)")
            }
            guard current.job.version == expectedVersion else {
                throw StoreError(
                    .conflict,
                    "job \(id) was changed by someone else (now version \(current.job.version)); reload it and try again"
                )
            }
            if definition.hostId != current.job.hostId || definition.agentType != current.job.agentType {
                try Self.checkHost(db, definition)
            }
            var job = current.job
            job.name = definition.name
            job.hostId = definition.hostId
            job.agentType = definition.agentType
            job.parameters = definition.parameters
            job.schedule = definition.schedule
            job.timeoutSeconds = definition.timeoutSeconds
            job.queueTimeoutSeconds = definition.queueTimeoutSeconds
            job.retry = definition.retry
            job.version += 1
            job.updatedAt = now
            try db.query(
                """
                UPDATE jobs SET name = ?, host_id = ?, agent_type = ?, parameters = ?, timeout_seconds = ?,
                    queue_timeout_seconds = ?, version = ?, updated_at = ?, retry_policy = ?
                WHERE id = ? AND version = ?
                """,
                [
                    .text(job.name), .text(job.hostId), .text(job.agentType.rawValue),
                    .text(Codec.parameters(job.parameters)),
                    .int(job.timeoutSeconds), .int(job.queueTimeoutSeconds), .int(job.version), .date(now),
                    .optionalText(job.retry?.jsonText), .text(id), .int(expectedVersion),
                ])
            // New fire times count from now; pausing, resuming or a policy change keep the schedule's place.
            var state: ScheduleState?
            if let schedule = job.schedule {
                if let previous = current.job.schedule, previous.sameTimes(as: schedule),
                    let currentState = current.scheduleState
                {
                    state = SchedulePlanner.state(currentState, for: schedule, jobId: id, now: now)
                } else {
                    state = SchedulePlanner.initialState(for: schedule, jobId: id, now: now)
                }
            }
            try Self.saveSchedule(job.schedule, state: state, jobId: id, db)
            try Self.appendAudit(
                .jobEdit(
                    from: JobDefinition(current.job), to: definition, version: job.version, jobId: id, actor: actor,
                    at: now), db)
            return job
        }
    }

    public func deleteJob(id: String, by actor: RunRequester?, now: Date) async throws {
        try await write { db in
            if let active = try Self.activeRunId(jobId: id, db) {
                throw StoreError.activeRun(jobId: id, runId: active)
            }
            let name = try db.query("SELECT name FROM jobs WHERE id = ?", [.text(id)]).first?.string("name")
            try db.query("DELETE FROM jobs WHERE id = ?", [.text(id)])
            guard db.changes == 1 else { throw StoreError(.notFound, "no job with id \(id)") }
            try Self.appendAudit(
                AuditEntry(at: now, action: .jobDeleted, actor: actor, targetId: id, targetName: name), db)
        }
    }
}
