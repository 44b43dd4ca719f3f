import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The ``Store`` on a SQLite file (WAL, group commit), for the embedded shape and small deployments.
public final class SQLiteStore: Store {
    package let database: SQLiteDatabase

    /// The database file.
    public var path: String { database.path }

    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    /// - Parameters:
    ///   - path: The database file; its directory must exist.
    ///   - durableCommits: `true` (default) fsyncs every commit so it survives a power loss; `false`
    ///     survives process crashes only.
    /// - Throws: ``StoreError`` with code `unavailable` when the file cannot be opened or migrated.
    public init(path: String, durableCommits: Bool = true) throws {
        if path != ":memory:" && !path.hasPrefix("file:") {
            // Created 0600 before SQLite opens it: its WAL and shared-memory files take its mode.
            do {
                try PrivateFiles.ensurePrivate(path)
                for companion in [path + "-wal", path + "-shm"] where PrivateFiles.mode(of: companion) != nil {
                    try PrivateFiles.ensurePrivate(companion)
                }
            } catch {
                throw StoreError(.unavailable, "cannot open the SQLite database at \(path): \(error)")
            }
        }
        do {
            database = try SQLiteDatabase(
                path: path, durability: durableCommits ? .full : .normal, migrations: SQLiteSchema.migrations)
        } catch let error as SQLiteError {
            throw StoreError(.unavailable, "cannot open the SQLite database at \(path): \(error.message)")
        }
    }

    /// Waits for queued writes and refuses new ones.
    public func close() async { await database.close() }

    public func appliedMigrations() async throws -> [Int] {
        try await guarded { try await self.database.appliedMigrations() }
    }

    // MARK: API tokens

    public func createAPIToken(name: String, scope: TokenScope, now: Date) async throws -> (APIToken, Secret) {
        let secret = Secret.generate(prefix: "ajt")
        let token = APIToken(id: Identifier.make("tok"), name: name, scope: scope, createdAt: now, revokedAt: nil)
        try await write { db in
            try db.query(
                "INSERT INTO api_tokens (id, name, scope, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                [.text(token.id), .text(name), .text(scope.rawValue), .text(secret.hash), .date(now)])
        }
        return (token, secret)
    }

    public func apiToken(secretHash: String) async throws -> APIToken? {
        try await read { db in
            try db.query("SELECT * FROM api_tokens WHERE secret_hash = ? AND revoked_at IS NULL", [.text(secretHash)])
                .first.map(Self.apiToken)
        }
    }

    public func listAPITokens() async throws -> [APIToken] {
        try await read { db in try db.query("SELECT * FROM api_tokens ORDER BY created_at, id").map(Self.apiToken) }
    }

    public func revokeAPIToken(id: String, now: Date) async throws -> APIToken {
        try await write { db in
            try db.query(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [.date(now), .text(id)])
            guard let row = try db.query("SELECT * FROM api_tokens WHERE id = ?", [.text(id)]).first else {
                throw StoreError(.notFound, "no API token with id \(id)")
            }
            return try Self.apiToken(row)
        }
    }

    private static func apiToken(_ row: SQLiteRow) throws -> APIToken {
        let stored = try StoredRow("api_tokens", id: row.string("id"))
        return APIToken(
            id: stored.id, name: try stored.value(row.string("name"), "name"),
            scope: try stored.known(row.string("scope"), "scope"),
            createdAt: try stored.value(row.date("created_at"), "created_at"), revokedAt: row.date("revoked_at"))
    }

    // MARK: Hosts

    public func registerHost(
        registrationTokenHash: String, name: String, managedAgents: [AgentType], credential: Secret, now: Date
    ) async throws -> Host {
        let host = Host(id: Identifier.make("host"), name: name, managedAgents: managedAgents, registeredAt: now)
        return try await write { db in
            try db.query(
                """
                UPDATE registration_tokens SET used_at = ?, used_by_host_id = ?
                WHERE secret_hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
                """,
                [.date(now), .text(host.id), .text(registrationTokenHash), .date(now)])
            guard db.changes == 1 else {
                throw StoreError(
                    .invalidRegistrationToken,
                    "the registration token is unknown, already used, expired or revoked; ask an admin for a new one (POST /api/v1/registration-tokens)"
                )
            }
            try db.query(
                "INSERT INTO hosts (id, name, managed_agents, credential_hash, registered_at) VALUES (?, ?, ?, ?, ?)",
                [.text(host.id), .text(name), .text(Codec.agents(managedAgents)), .text(credential.hash), .date(now)])
            return host
        }
    }

    public func host(id: String) async throws -> Host? {
        try await read { db in try db.query("SELECT * FROM hosts WHERE id = ?", [.text(id)]).first.map(Self.host) }
    }

    public func host(credentialHash: String) async throws -> Host? {
        try await read { db in
            try db.query("SELECT * FROM hosts WHERE credential_hash = ?", [.text(credentialHash)]).first.map(Self.host)
        }
    }

    public func listHosts() async throws -> [Host] {
        try await read { db in try db.query("SELECT * FROM hosts ORDER BY name, id").map(Self.host) }
    }

    public func updateManagedAgents(hostId: String, managedAgents: [AgentType]) async throws -> Host {
        try await write { db in
            try db.query(
                "UPDATE hosts SET managed_agents = ? WHERE id = ?", [.text(Codec.agents(managedAgents)), .text(hostId)])
            guard let row = try db.query("SELECT * FROM hosts WHERE id = ?", [.text(hostId)]).first else {
                throw StoreError(.notFound, "no host with id \(hostId)")
            }
            return try Self.host(row)
        }
    }

    static func host(_ row: SQLiteRow) throws -> Host {
        let stored = try StoredRow("hosts", id: row.string("id"))
        return Host(
            id: stored.id, name: try stored.value(row.string("name"), "name"),
            managedAgents: Codec.agents(try stored.value(row.string("managed_agents"), "managed_agents")),
            registeredAt: try stored.value(row.date("registered_at"), "registered_at"),
            lastSeenAt: row.date("last_seen_at"),
            version: row.string("version"), heartbeatPartition: row.int("heartbeat_partition").map(Int32.init),
            clockSkewSeconds: row.int("clock_skew_ms").map { Double($0) / 1000 }, revokedAt: row.date("revoked_at"))
    }

    // MARK: Jobs

    public func createJob(_ definition: JobDefinition, now: Date) async throws -> Job {
        let job = Job(
            id: Identifier.make("job"), name: definition.name, hostId: definition.hostId,
            agentType: definition.agentType,
            parameters: definition.parameters, schedule: definition.schedule, timeoutSeconds: definition.timeoutSeconds,
            queueTimeoutSeconds: definition.queueTimeoutSeconds, version: 1, createdAt: now, updatedAt: now)
        let state = definition.schedule.map { SchedulePlanner.initialState(for: $0, jobId: job.id, now: now) }
        return try await write { db in
            try Self.checkHost(db, definition)
            try db.query(
                """
                INSERT INTO jobs (id, name, host_id, agent_type, parameters, timeout_seconds, queue_timeout_seconds, version,
                                  created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(job.id), .text(job.name), .text(job.hostId), .text(job.agentType.rawValue),
                    .text(Codec.parameters(job.parameters)), .int(job.timeoutSeconds), .int(job.queueTimeoutSeconds),
                    .int(job.version), .date(now), .date(now),
                ])
            try Self.saveSchedule(job.schedule, state: state, jobId: job.id, db)
            return job
        }
    }

    /// Writes a job's schedule definition and state columns.
    private static func saveSchedule(
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

    private static func checkHost(_ db: SQLiteConnection, _ definition: JobDefinition) throws {
        guard let row = try db.query("SELECT * FROM hosts WHERE id = ?", [.text(definition.hostId)]).first else {
            throw ValidationError(
                field: "hostId", message: "no host with id '\(definition.hostId)'; list hosts with GET /api/v1/hosts")
        }
        try definition.check(against: host(row))
    }

    private static let jobSelect = """
        SELECT j.*, \(runColumns.map { "r.\($0) AS r_\($0)" }.joined(separator: ", "))
        FROM jobs j LEFT JOIN runs r ON r.seq = (SELECT max(seq) FROM runs WHERE job_id = j.id)
        """

    public func job(id: String) async throws -> JobRecord? {
        try await read { db in
            try db.query(Self.jobSelect + " WHERE j.id = ?", [.text(id)]).first.map(Self.jobRecord)
        }
    }

    public func listJobs(_ filter: JobFilter) async throws -> [JobRecord] {
        var conditions: [String] = []
        var bindings: [SQLiteValue] = []
        if let hostId = filter.hostId {
            conditions.append("j.host_id = ?")
            bindings.append(.text(hostId))
        }
        if let agentType = filter.agentType {
            conditions.append("j.agent_type = ?")
            bindings.append(.text(agentType.rawValue))
        }
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return try await read { [bindings] db in
            try db.query(Self.jobSelect + whereClause + " ORDER BY j.seq DESC", bindings).map(Self.jobRecord)
        }
    }

    public func updateJob(id: String, expectedVersion: Int, definition: JobDefinition, now: Date) async throws -> Job {
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
            job.version += 1
            job.updatedAt = now
            try db.query(
                """
                UPDATE jobs SET name = ?, host_id = ?, agent_type = ?, parameters = ?, timeout_seconds = ?,
                    queue_timeout_seconds = ?, version = ?, updated_at = ?
                WHERE id = ? AND version = ?
                """,
                [
                    .text(job.name), .text(job.hostId), .text(job.agentType.rawValue),
                    .text(Codec.parameters(job.parameters)),
                    .int(job.timeoutSeconds), .int(job.queueTimeoutSeconds), .int(job.version), .date(now), .text(id),
                    .int(expectedVersion),
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
            return job
        }
    }

    public func deleteJob(id: String) async throws {
        try await write { db in
            if let active = try Self.activeRunId(jobId: id, db) {
                throw StoreError.activeRun(jobId: id, runId: active)
            }
            try db.query("DELETE FROM jobs WHERE id = ?", [.text(id)])
            guard db.changes == 1 else { throw StoreError(.notFound, "no job with id \(id)") }
        }
    }

    private static func jobRecord(_ row: SQLiteRow) throws -> JobRecord {
        let stored = try StoredRow("jobs", id: row.string("id"))
        let agentType: AgentType = try stored.known(row.string("agent_type"), "agent_type")
        let schedule = try row.string("schedule_cron").map {
            JobSchedule(
                cron: $0, timezone: try stored.value(row.string("schedule_timezone"), "schedule_timezone"),
                paused: try stored.value(row.int("schedule_paused"), "schedule_paused") == 1,
                missedPolicy: try stored.known(row.string("missed_policy"), "missed_policy"),
                catchUpWindowSeconds: try stored.value(row.int("catch_up_window_seconds"), "catch_up_window_seconds"),
                jitterSeconds: try stored.value(row.int("jitter_seconds"), "jitter_seconds"))
        }
        let job = Job(
            id: stored.id, name: try stored.value(row.string("name"), "name"),
            hostId: try stored.value(row.string("host_id"), "host_id"), agentType: agentType,
            parameters: try stored.parameters(row.string("parameters"), "parameters", agentType: agentType),
            schedule: schedule, timeoutSeconds: try stored.value(row.int("timeout_seconds"), "timeout_seconds"),
            queueTimeoutSeconds: try stored.value(row.int("queue_timeout_seconds"), "queue_timeout_seconds"),
            version: try stored.value(row.int("version"), "version"),
            createdAt: try stored.value(row.date("created_at"), "created_at"),
            updatedAt: try stored.value(row.date("updated_at"), "updated_at"))
        let state = row.date("schedule_cursor").map {
            ScheduleState(
                cursor: $0, nextOccurrence: row.date("next_occurrence_at"), dueAt: row.date("schedule_due_at"))
        }
        return JobRecord(
            job: job, lastRun: row.string("r_id") == nil ? nil : try row.columns["r_id"].map { try run(row, from: $0) },
            scheduleState: schedule == nil ? nil : state)
    }

    // MARK: Runs

    public func triggerRun(jobId: String, trigger: RunTrigger, scheduledAt: Date?, now: Date) async throws -> Run {
        // The id is drawn here, on the caller's task; the writer queue (serial) only reads the job's
        // columns, copies them into the run and writes the three rows.
        let runId = Identifier.makeTimeOrdered("run", at: now)
        return try await write { db in
            guard
                let row = try db.query(
                    """
                    SELECT id, name, version, host_id, agent_type, parameters, timeout_seconds, queue_timeout_seconds
                    FROM jobs WHERE id = ?
                    """, [.text(jobId)]
                ).first
            else {
                throw StoreError(.notFound, "no job with id \(jobId)")
            }
            let stored = try StoredRow("jobs", id: jobId)
            let agentType: AgentType = try stored.known(row.string("agent_type"), "agent_type")
            let parametersText = row.string("parameters")
            let run = Run(
                id: runId, jobId: jobId, jobName: try stored.value(row.string("name"), "name"),
                jobVersion: try stored.value(row.int("version"), "version"),
                hostId: try stored.value(row.string("host_id"), "host_id"), agentType: agentType,
                parameters: try stored.parameters(parametersText, "parameters", agentType: agentType),
                timeoutSeconds: try stored.value(row.int("timeout_seconds"), "timeout_seconds"),
                queueTimeoutSeconds: try stored.value(row.int("queue_timeout_seconds"), "queue_timeout_seconds"),
                trigger: trigger, scheduledAt: scheduledAt, queuedAt: now)
            try Self.write(run, parametersText: parametersText, now: now, db)
            return run
        }
    }

    /// The one trigger path (manual, API and schedule): the run with its job snapshot and the dispatch
    /// in the outbox, inside the caller's transaction. (A job's last run is its newest run, found
    /// through `runs_by_job`; no pointer on the job row to update.)
    private static func trigger(_ job: Job, trigger: RunTrigger, scheduledAt: Date?, now: Date, _ db: SQLiteConnection)
        throws -> Run
    {
        let run = Run.queued(of: job, trigger: trigger, scheduledAt: scheduledAt, at: now)
        try write(run, parametersText: nil, now: now, db)
        return run
    }

    /// Writes a new run and queues its dispatch, refusing a second active run.
    /// - Parameter parametersText: The job's stored parameters column, copied as it is when given
    ///   (rather than encoding `run.parameters` again).
    private static func write(_ run: Run, parametersText: String?, now: Date, _ db: SQLiteConnection) throws {
        do {
            try insert(run, parametersText: parametersText, db)
        } catch let error as SQLiteError where error.isUniqueViolation {
            throw StoreError.activeRun(jobId: run.jobId, runId: try activeRunId(jobId: run.jobId, db) ?? "unknown")
        }
        try appendOutbox(
            key: run.hostId, type: RunDispatch.type, payload: RunDispatch(run: run).jsonBytes, runId: run.id, now: now,
            db)
    }

    /// Writes a row of the outbox (topic `agentjobs.dispatch`) and its payload, inside the caller's
    /// transaction.
    static func appendOutbox(
        key: String, type: String, payload: [UInt8], runId: String, now: Date, _ db: SQLiteConnection
    ) throws {
        try db.execute(
            "INSERT INTO outbox (topic, key, type, run_id, created_at) VALUES (?, ?, ?, ?, ?)",
            [.text(Topic.dispatch), .text(key), .text(type), .text(runId), .date(now)])
        let sequence = db.lastInsertRowID
        try db.execute(
            "INSERT INTO outbox_payloads (seq, payload) VALUES (?, ?)", [.integer(sequence), .blob(payload)])
        try db.execute("INSERT INTO outbox_unsent (seq) VALUES (?)", [.integer(sequence)])
    }

    private static func activeRunId(jobId: String, _ db: SQLiteConnection) throws -> String? {
        try db.query("SELECT id FROM runs WHERE job_id = ? AND status IN ('queued', 'running')", [.text(jobId)]).first?
            .string("id")
    }

    private static func insert(_ run: Run, parametersText: String?, _ db: SQLiteConnection) throws {
        try db.query(
            """
            INSERT INTO runs (id, job_id, job_name, job_version, host_id, agent_type, parameters, timeout_seconds,
                              queue_timeout_seconds, status, trigger, scheduled_at, queued_at, dispatch_epoch)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(run.id), .text(run.jobId), .text(run.jobName), .int(run.jobVersion), .text(run.hostId),
                .text(run.agentType.rawValue), .text(parametersText ?? Codec.parameters(run.parameters)),
                .int(run.timeoutSeconds),
                .int(run.queueTimeoutSeconds), .text(run.status.rawValue), .text(run.trigger.rawValue),
                .optionalDate(run.scheduledAt), .date(run.queuedAt), .int(run.dispatchEpoch),
            ])
    }

    public func run(id: String) async throws -> Run? {
        try await read { db in
            try db.query(Self.runSelect + " WHERE id = ?", [.text(id)]).first.map { try Self.run($0, from: 1) }
        }
    }

    public func listRuns(_ filter: RunFilter, cursor: String?, limit: Int) async throws -> RunPage {
        var conditions: [String] = []
        var bindings: [SQLiteValue] = []
        if let cursor {
            guard let sequence = RunCursor.decode(cursor) else {
                throw ValidationError(
                    field: "cursor", message: "is not a cursor this server returned; start again without it")
            }
            conditions.append("seq < ?")
            bindings.append(.integer(sequence))
        }
        if let jobId = filter.jobId {
            conditions.append("job_id = ?")
            bindings.append(.text(jobId))
        }
        if let hostId = filter.hostId {
            conditions.append("host_id = ?")
            bindings.append(.text(hostId))
        }
        if let agentType = filter.agentType {
            conditions.append("agent_type = ?")
            bindings.append(.text(agentType.rawValue))
        }
        if let status = filter.status {
            conditions.append("status = ?")
            bindings.append(.text(status.rawValue))
        }
        bindings.append(.int(limit + 1))
        let sql =
            Self.runSelect + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY seq DESC LIMIT ?"
        return try await read { [bindings] db in
            let rows = try db.query(sql, bindings)
            let page = rows.prefix(limit)
            let next = rows.count > limit ? page.last?.int64("seq").map(RunCursor.encode) : nil
            return RunPage(runs: try page.map { try Self.run($0, from: 1) }, nextCursor: next)
        }
    }

    public func requestCancel(runId: String, now: Date) async throws -> CancelOutcome {
        try await write { db in
            guard
                var run = try db.query(Self.runSelect + " WHERE id = ?", [.text(runId)]).first.map({
                    try Self.run($0, from: 1)
                })
            else {
                throw StoreError(.notFound, "no run with id \(runId)")
            }
            guard run.status.isActive else {
                throw StoreError(
                    .runFinished, "run \(runId) already ended as \(run.status.rawValue); there is nothing to cancel")
            }
            if run.cancelRequestedAt != nil { return .requested(run) }
            run.cancelRequestedAt = now
            // A dispatch still unsent in the outbox is withdrawn and the run canceled right here.
            // Either way a cancel is queued: after a withdrawal, for a relay that read the dispatch
            // just before and is publishing it (the cancel, on the same key, follows it on the
            // host's partition and keeps the host from launching it, or stops it at once); a host
            // that never gets the dispatch just records the cancel.
            var withdrawn = false
            if run.status == .queued {
                try db.query(
                    """
                    DELETE FROM outbox WHERE run_id = ? AND type = ?
                    AND EXISTS (SELECT 1 FROM outbox_unsent u WHERE u.seq = outbox.seq)
                    """,
                    [.text(runId), .text(RunDispatch.type)])
                withdrawn = db.changes > 0
            }
            if withdrawn {
                run.apply(.canceled(at: now))
                try db.query(
                    "UPDATE runs SET status = ?, cancel_requested_at = ?, finished_at = ? WHERE id = ?",
                    [.text(run.status.rawValue), .date(now), .date(now), .text(runId)])
            } else {
                try db.query("UPDATE runs SET cancel_requested_at = ? WHERE id = ?", [.date(now), .text(runId)])
            }
            try Self.enqueueCancel(for: run, now: now, db)
            return withdrawn ? .canceled(run) : .requested(run)
        }
    }

    /// The columns a ``Run`` is made of, in the order ``run(_:from:)`` reads them.
    static let runColumns = [
        "id", "job_id", "job_name", "job_version", "host_id", "agent_type", "parameters", "timeout_seconds",
        "queue_timeout_seconds", "status", "trigger", "scheduled_at", "queued_at", "started_at", "finished_at",
        "exit_code", "error_summary", "cancel_requested_at", "dispatch_epoch",
    ]

    /// `SELECT` of runs: `seq` (column 0), then ``runColumns`` (a run is read `from: 1`).
    static let runSelect = "SELECT seq, " + runColumns.joined(separator: ", ") + " FROM runs"

    /// The run in the ``runColumns`` of `row` starting at column `first`.
    static func run(_ row: some SQLiteColumnReader, from first: Int) throws -> Run {
        let stored = try StoredRow("runs", id: row.string(at: first))
        func column<T>(_ value: T?, _ offset: Int) throws -> T { try stored.value(value, runColumns[offset]) }
        let agentType: AgentType = try stored.known(row.string(at: first + 5), runColumns[5])
        return Run(
            id: stored.id, jobId: try column(row.string(at: first + 1), 1),
            jobName: try column(row.string(at: first + 2), 2), jobVersion: try column(row.int(at: first + 3), 3),
            hostId: try column(row.string(at: first + 4), 4), agentType: agentType,
            parameters: try stored.parameters(row.string(at: first + 6), runColumns[6], agentType: agentType),
            timeoutSeconds: try column(row.int(at: first + 7), 7),
            queueTimeoutSeconds: try column(row.int(at: first + 8), 8),
            status: try stored.known(row.string(at: first + 9), runColumns[9]),
            trigger: try stored.known(row.string(at: first + 10), runColumns[10]),
            scheduledAt: row.date(at: first + 11), queuedAt: try column(row.date(at: first + 12), 12),
            startedAt: row.date(at: first + 13), finishedAt: row.date(at: first + 14),
            exitCode: row.int(at: first + 15), errorSummary: row.string(at: first + 16),
            cancelRequestedAt: row.date(at: first + 17), dispatchEpoch: try column(row.int(at: first + 18), 18))
    }

    // MARK: Schedules

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
        jobId: String, expectedCursor: Date, decisions: [OccurrenceDecision], newState: ScheduleState, now: Date
    ) async throws -> [ScheduleOccurrence] {
        try await write { db in
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
                            record.job, trigger: .schedule, scheduledAt: decision.scheduledAt, now: now, db)
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

    // MARK: Outbox

    public func pendingOutbox(after sequence: Int64, limit: Int) async throws -> [OutboxMessage] {
        try await read { db in
            var messages: [OutboxMessage] = []
            messages.reserveCapacity(limit)
            try db.forEachRow(
                """
                SELECT o.seq, o.topic, o.key, o.run_id, o.type, p.payload, o.created_at
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
                        createdAt: try stored.value(row.date(at: 6), "created_at")))
            }
            return messages
        }
    }

    // What outbox rows hold (read without allocating them again for every row).
    private static let outboxTopics = [Topic.dispatch]
    private static let outboxTypes = [RunDispatch.type, RunCancel.type]

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

    // MARK: Plumbing

    /// Runs a write, turning SQLite failures into ``StoreError``.
    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await guarded { try await self.database.write(body) }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await guarded { try await self.database.read(body) }
    }

    private func guarded<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SQLiteError {
            throw StoreError(.unavailable, "database error: \(error.message)")
        }
    }
}

/// Opaque run-list cursors: the position of the last run of a page.
enum RunCursor {
    static func encode(_ sequence: Int64) -> String { "c" + String(sequence, radix: 36) }

    static func decode(_ cursor: String) -> Int64? {
        guard cursor.first == "c", let value = Int64(cursor.dropFirst(), radix: 36), value > 0 else { return nil }
        return value
    }
}

/// JSON columns.
enum Codec {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(ISO8601.format(date))
        }
        return Array(try encoder.encode(value))
    }

    /// The stored form (the same text as `encode` gives, written without `JSONEncoder`).
    static func parameters(_ parameters: AgentParameters) -> String {
        parameters.jsonText
    }

    static func agents(_ agents: [AgentType]) -> String {
        (try? encode(agents)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }

    static func agents(_ text: String) -> [AgentType] {
        ((try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? []).compactMap(AgentType.init(rawValue:))
    }
}
