import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Jobs

extension PostgresStore {
    public func createJob(_ definition: JobDefinition, by actor: RunRequester?, now: Date) async throws -> Job {
        let job = Job(
            id: Identifier.make("job"), name: definition.name, hostId: definition.hostId,
            agentType: definition.agentType, parameters: definition.parameters, schedule: definition.schedule,
            timeoutSeconds: definition.timeoutSeconds, queueTimeoutSeconds: definition.queueTimeoutSeconds,
            retry: definition.retry, version: 1, createdAt: now, updatedAt: now)
        let state = definition.schedule.map { SchedulePlanner.initialState(for: $0, jobId: job.id, now: now) }
        return try await write { db in
            try await Self.checkHost(db, definition)
            try await db.query(
                """
                INSERT INTO jobs (id, name, host_id, agent_type, parameters, timeout_seconds, queue_timeout_seconds,
                                  version, created_at, updated_at, retry_policy)
                VALUES (\(job.id), \(job.name), \(job.hostId), \(job.agentType.rawValue),
                        \(StoredForm.parameters(job.parameters)), \(job.timeoutSeconds), \(job.queueTimeoutSeconds),
                        \(job.version), \(StoredTime.ms(now)), \(StoredTime.ms(now)), \(job.retry?.jsonText))
                """)
            try await Self.saveSchedule(job.schedule, state: state, jobId: job.id, db)
            try await Self.appendAudit(.jobCreated(job, actor: actor, at: now), db)
            return job
        }
    }

    /// Writes a job's schedule definition and state columns.
    static func saveSchedule(
        _ schedule: JobSchedule?, state: ScheduleState?, jobId: String, _ db: PostgresSession
    ) async throws {
        try await db.query(
            """
            UPDATE jobs SET schedule_cron = \(schedule?.cron), schedule_timezone = \(schedule?.timezone),
                schedule_paused = \(schedule?.paused == true),
                missed_policy = \(schedule?.missedPolicy.rawValue ?? MissedPolicy.latest.rawValue),
                catch_up_window_seconds = \(schedule?.catchUpWindowSeconds ?? JobSchedule.defaultCatchUpWindowSeconds),
                jitter_seconds = \(schedule?.jitterSeconds ?? 0),
                schedule_cursor = \(StoredTime.ms(state?.cursor)),
                next_occurrence_at = \(StoredTime.ms(state?.nextOccurrence)),
                schedule_due_at = \(StoredTime.ms(state?.dueAt))
            WHERE id = \(jobId)
            """)
    }

    /// Checks that the definition's host exists and manages its agent type.
    /// - Throws: ``ValidationError`` (field `hostId` or `agentType`).
    static func checkHost(_ db: PostgresSession, _ definition: JobDefinition) async throws {
        // FOR SHARE: a concurrent change of the host's agent types (another replica) waits for this
        // transaction, so no job is saved for an agent type its host just stopped managing.
        guard let row = try await db.query("SELECT * FROM hosts WHERE id = \(definition.hostId) FOR SHARE").first
        else {
            throw ValidationError(
                field: "hostId", message: "no host with id '\(definition.hostId)'; list hosts with GET /api/v1/hosts")
        }
        try definition.check(against: host(row))
    }

    /// `SELECT` of jobs (`j`) with their last run (the newest, found through `runs_by_job`), its
    /// columns prefixed `r_`.
    static let jobSelect = """
        SELECT j.*, \(runColumns.map { "r.\($0) AS r_\($0)" }.joined(separator: ", "))
        FROM jobs j LEFT JOIN runs r ON r.seq = (SELECT max(seq) FROM runs WHERE job_id = j.id)
        """

    /// Locks a job's row until the transaction ends (`FOR UPDATE`: its definition or schedule will
    /// change; `FOR SHARE`: a run of it is being triggered).
    /// - Returns: Whether the job exists.
    static func lockJob(_ id: String, exclusive: Bool, _ db: PostgresSession) async throws -> Bool {
        let mode = exclusive ? "UPDATE" : "SHARE"
        let rows = try await db.query("SELECT 1 FROM jobs WHERE id = \(id) FOR \(unescaped: mode)")
        return !rows.isEmpty
    }

    /// The job with its last run, as of now (read after ``lockJob(_:exclusive:_:)`` to see the
    /// latest committed version).
    static func jobRecord(id: String, _ db: PostgresSession) async throws -> JobRecord? {
        try await db.query("\(unescaped: jobSelect) WHERE j.id = \(id)").first.map { try Self.jobRecord($0) }
    }

    public func job(id: String) async throws -> JobRecord? {
        try await read { db in try await Self.jobRecord(id: id, db) }
    }

    public func listJobs(_ filter: JobFilter, cursor: String?, limit: Int?) async throws -> JobPage {
        var conditions: [String] = []
        var bindings = PostgresBindings()
        for (column, value) in [
            ("j.host_id", filter.hostId), ("j.agent_type", filter.agentType?.rawValue), ("j.name", filter.name),
        ] {
            guard let value else { continue }
            bindings.append(value)
            conditions.append("\(column) = $\(bindings.count)")
        }
        if let part = filter.nameContains {
            // ASCII letters only, as SQLite's lower() does, so both stores find the same jobs.
            bindings.append(part)
            conditions.append("strpos(lower(j.name COLLATE \"C\"), lower($\(bindings.count) COLLATE \"C\")) > 0")
        }
        switch filter.lastRun {
        case .status(let status):
            bindings.append(status.rawValue)
            conditions.append("r.status = $\(bindings.count)")
        case .never:
            conditions.append("r.id IS NULL")
        case nil:
            break
        }
        // The last run is joined for counting only when it is filtered on: one row per job either way.
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        let count = PostgresQuery(
            unsafeSQL: filter.lastRun == nil
                ? "SELECT COUNT(*) FROM jobs j" + whereClause
                : "SELECT COUNT(*) FROM (" + Self.jobSelect + whereClause + ") matching",
            binds: bindings)
        if let cursor {
            guard let sequence = PageCursor.decode(cursor) else { throw PageCursor.malformed }
            bindings.append(sequence)
            conditions.append("j.seq < $\(bindings.count)")
        }
        var sql = Self.jobSelect + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
        sql += " ORDER BY j.seq DESC"
        if let limit {
            bindings.append(max(0, limit) + 1)
            sql += " LIMIT $\(bindings.count)"
        }
        let query = PostgresQuery(unsafeSQL: sql, binds: bindings)
        return try await read { db in
            let total = Int(try await db.query(count).first?.decode(Int64.self) ?? 0)
            let rows = try await db.query(query)
            guard let limit, rows.count > limit else {
                return JobPage(jobs: try rows.map { try Self.jobRecord($0) }, nextCursor: nil, total: total)
            }
            let page = rows.prefix(max(0, limit))
            let next = try page.last.map {
                PageCursor.encode(try StoredValues($0, table: "jobs").value("seq", Int64.self))
            }
            return JobPage(jobs: try page.map { try Self.jobRecord($0) }, nextCursor: next, total: total)
        }
    }

    public func updateJob(
        id: String, expectedVersion: Int, definition: JobDefinition, by actor: RunRequester?, now: Date
    ) async throws -> Job {
        try await write { db in
            // The lock makes the version check and the update one step against concurrent editors.
            guard try await Self.lockJob(id, exclusive: true, db),
                let current = try await Self.jobRecord(id: id, db)
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
                try await Self.checkHost(db, definition)
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
            try await db.query(
                """
                UPDATE jobs SET name = \(job.name), host_id = \(job.hostId), agent_type = \(job.agentType.rawValue),
                    parameters = \(StoredForm.parameters(job.parameters)), timeout_seconds = \(job.timeoutSeconds),
                    queue_timeout_seconds = \(job.queueTimeoutSeconds), version = \(job.version),
                    updated_at = \(StoredTime.ms(now)), retry_policy = \(job.retry?.jsonText)
                WHERE id = \(id) AND version = \(expectedVersion)
                """)
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
            try await Self.saveSchedule(job.schedule, state: state, jobId: id, db)
            try await Self.appendAudit(
                .jobEdit(
                    from: JobDefinition(current.job), to: definition, version: job.version, jobId: id, actor: actor,
                    at: now), db)
            return job
        }
    }

    public func deleteJob(id: String, by actor: RunRequester?, now: Date) async throws {
        try await write { db in
            // Locked first, so that a trigger under way (which holds the row `FOR SHARE`) commits
            // its run before the active-run check reads.
            let exists = try await Self.lockJob(id, exclusive: true, db)
            if let active = try await Self.activeRunId(jobId: id, db) {
                throw Self.activeRunError(jobId: id, runId: active)
            }
            guard exists else { throw StoreError(.notFound, "no job with id \(id)") }
            let name = try await db.query("DELETE FROM jobs WHERE id = \(id) RETURNING name").first.map {
                try $0.decode(String.self)
            }
            try await Self.appendAudit(
                AuditEntry(at: now, action: .jobDeleted, actor: actor, targetId: id, targetName: name), db)
        }
    }
}
