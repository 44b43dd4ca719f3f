import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Runs

extension SQLiteStore {
    public func triggerRun(
        jobId: String, trigger: RunTrigger, scheduledAt: Date?, rerunOf: String?, triggeredBy: RunRequester?, now: Date,
        traceParent: String?
    ) async throws -> Run {
        // The id is drawn here, on the caller's task; the writer queue (serial) only reads the job's
        // columns, copies them into the run and writes the three rows.
        let runId = Identifier.makeTimeOrdered("run", at: now)
        let run = try await write { db in
            guard
                let row = try db.query(
                    """
                    SELECT id, name, version, host_id, agent_type, parameters, timeout_seconds, queue_timeout_seconds,
                        retry_policy
                    FROM jobs WHERE id = ?
                    """, [.text(jobId)]
                ).first
            else {
                throw StoreError(.notFound, "no job with id \(jobId)")
            }
            let stored = try StoredRow("jobs", id: jobId)
            let agentType: AgentType = try stored.known(row.string("agent_type"), "agent_type")
            let parametersText = row.string("parameters")
            let job = JobSnapshot(
                jobId: jobId, jobName: try stored.value(row.string("name"), "name"),
                jobVersion: try stored.value(row.int("version"), "version"),
                hostId: try stored.value(row.string("host_id"), "host_id"), agentType: agentType,
                parameters: try stored.parameters(parametersText, "parameters", agentType: agentType),
                timeoutSeconds: try stored.value(row.int("timeout_seconds"), "timeout_seconds"),
                queueTimeoutSeconds: try stored.value(row.int("queue_timeout_seconds"), "queue_timeout_seconds"),
                retryPolicy: try stored.retryPolicy(row.string("retry_policy"), "retry_policy"))
            let run = Run.queued(
                id: runId, of: job, trigger: trigger, scheduledAt: scheduledAt, rerunOf: rerunOf,
                triggeredBy: triggeredBy, at: now)
            try Self.write(run, parametersText: parametersText, now: now, traceParent: traceParent, db)
            if trigger != .schedule { try Self.appendAudit(.runTriggered(run, actor: triggeredBy, at: now), db) }
            return run
        }
        outboxAppended()
        return run
    }

    /// The one trigger path (manual, API and schedule): the run with its job snapshot and the dispatch
    /// in the outbox, inside the caller's transaction. (A job's last run is its newest run, found
    /// through `runs_by_job`; no pointer on the job row to update.)
    static func trigger(
        _ job: Job, trigger: RunTrigger, scheduledAt: Date?, now: Date, traceParent: String? = nil,
        _ db: SQLiteConnection
    ) throws -> Run {
        let run = Run.queued(
            of: job, trigger: trigger, scheduledAt: scheduledAt, triggeredBy: trigger == .schedule ? .schedule : nil,
            at: now)
        try write(run, parametersText: nil, now: now, traceParent: traceParent, db)
        return run
    }

    /// Writes a new run and queues its dispatch, refusing a second active run.
    /// - Parameter parametersText: The job's stored parameters column, copied as it is when given
    ///   (rather than encoding `run.parameters` again).
    static func write(
        _ run: Run, parametersText: String?, now: Date, traceParent: String? = nil, _ db: SQLiteConnection
    ) throws {
        do {
            try insert(run, parametersText: parametersText, db)
        } catch let error as SQLiteError where error.isUniqueViolation {
            throw StoreError.activeRun(jobId: run.jobId, runId: try activeRunId(jobId: run.jobId, db) ?? "unknown")
        }
        try appendOutbox(.dispatch(run, traceParent: traceParent), now: now, db)
    }

    /// Writes a row of the outbox (topic `agentjobs.dispatch`) and its payload, inside the caller's
    /// transaction.
    static func appendOutbox(_ command: OutboxCommand, now: Date, _ db: SQLiteConnection) throws {
        try db.execute(
            "INSERT INTO outbox (topic, key, type, run_id, created_at, trace_parent) VALUES (?, ?, ?, ?, ?, ?)",
            [
                .text(command.topic), .text(command.key), .text(command.type), .text(command.runId), .date(now),
                .optionalText(command.traceParent),
            ])
        let sequence = db.lastInsertRowID
        try db.execute(
            "INSERT INTO outbox_payloads (seq, payload) VALUES (?, ?)", [.integer(sequence), .blob(command.payload)])
        try db.execute("INSERT INTO outbox_unsent (seq) VALUES (?)", [.integer(sequence)])
    }

    static func activeRunId(jobId: String, _ db: SQLiteConnection) throws -> String? {
        try db.query("SELECT id FROM runs WHERE job_id = ? AND status IN ('queued', 'running')", [.text(jobId)]).first?
            .string("id")
    }

    static func insert(_ run: Run, parametersText: String?, _ db: SQLiteConnection) throws {
        try db.query(
            """
            INSERT INTO runs (id, job_id, job_name, job_version, host_id, agent_type, parameters, timeout_seconds,
                              queue_timeout_seconds, status, trigger, scheduled_at, queued_at, dispatch_epoch,
                              rerun_of, triggered_by, attempt, retry_of, retry_policy, held_until)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .text(run.id), .text(run.jobId), .text(run.jobName), .int(run.jobVersion), .text(run.hostId),
                .text(run.agentType.rawValue), .text(parametersText ?? Codec.parameters(run.parameters)),
                .int(run.timeoutSeconds),
                .int(run.queueTimeoutSeconds), .text(run.status.rawValue), .text(run.trigger.rawValue),
                .optionalDate(run.scheduledAt), .date(run.queuedAt), .int(run.dispatchEpoch),
                .optionalText(run.rerunOf), .optionalText(run.triggeredBy?.storedForm), .int(run.attempt),
                .optionalText(run.retryOf), .optionalText(run.retryPolicy?.jsonText), .optionalDate(run.heldUntil),
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
            guard let sequence = PageCursor.decode(cursor) else { throw PageCursor.malformed }
            conditions.append("seq < ?")
            bindings.append(.integer(sequence))
        }
        let matches: [(condition: String, value: SQLiteValue?)] = [
            ("job_id = ?", filter.jobId.map(SQLiteValue.text)), ("host_id = ?", filter.hostId.map(SQLiteValue.text)),
            ("agent_type = ?", filter.agentType.map { .text($0.rawValue) }),
            ("status = ?", filter.status.map { .text($0.rawValue) }),
            ("queued_at >= ?", filter.queuedSince.map(SQLiteValue.date)),
            ("queued_at < ?", filter.queuedUntil.map(SQLiteValue.date)),
        ]
        for (condition, value) in matches {
            guard let value else { continue }
            conditions.append(condition)
            bindings.append(value)
        }
        bindings.append(.int(limit + 1))
        let sql =
            Self.runSelect + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY seq DESC LIMIT ?"
        return try await read { [bindings] db in
            let rows = try db.query(sql, bindings)
            let page = rows.prefix(limit)
            let next = rows.count > limit ? page.last?.int64("seq").map(PageCursor.encode) : nil
            return RunPage(runs: try page.map { try Self.run($0, from: 1) }, nextCursor: next)
        }
    }

    public func requestCancel(runId: String, by requester: RunRequester?, now: Date) async throws -> CancelOutcome {
        let (outcome, appended) = try await write { db -> (CancelOutcome, Bool) in
            guard
                var run = try db.query(Self.runSelect + " WHERE id = ?", [.text(runId)]).first.map({
                    try Self.run($0, from: 1)
                })
            else {
                throw StoreError(.notFound, "no run with id \(runId)")
            }
            let withdrawDispatch: Bool
            switch run.cancelDecision {
            case .alreadyEnded:
                throw StoreError(
                    .runFinished, "run \(runId) already ended as \(run.status.rawValue); there is nothing to cancel")
            case .alreadyRequested:
                return (.requested(run), false)
            case .request(let withdraw):
                withdrawDispatch = withdraw
            }
            // A retry waiting out its delay has no dispatch yet: nothing of it reached a host.
            let held = run.heldUntil != nil
            var withdrawn = held
            if withdrawDispatch && !held {
                // Only a row no relay has sent yet (`outbox_unsent`) can be withdrawn.
                try db.query(
                    """
                    DELETE FROM outbox WHERE run_id = ? AND type = ?
                    AND EXISTS (SELECT 1 FROM outbox_unsent u WHERE u.seq = outbox.seq)
                    """,
                    [.text(runId), .text(RunDispatch.type)])
                withdrawn = db.changes > 0
            }
            run = run.cancelRequested(at: now, by: requester, dispatchWithdrawn: withdrawn)
            try db.query(
                """
                UPDATE runs SET status = ?, cancel_requested_at = ?, finished_at = ?, cancel_requested_by = ?,
                    held_until = NULL
                WHERE id = ?
                """,
                [
                    .text(run.status.rawValue), .date(now), .optionalDate(run.finishedAt),
                    .optionalText(requester?.storedForm), .text(runId),
                ])
            if !held { try Self.enqueueCancel(for: run, now: now, db) }
            if withdrawn {
                var subscriptions = WebhookSubscriptions()
                try Self.runEnded(run, retryable: false, subscriptions: &subscriptions, now: now, db)
            }
            try Self.appendAudit(.cancelRequested(run, actor: requester, withdrawn: withdrawn, at: now), db)
            return (withdrawn ? .canceled(run) : .requested(run), !held)
        }
        if appended { outboxAppended() }
        return outcome
    }

    /// The columns a ``Run`` is made of, in the order ``run(_:from:)`` reads them.
    static let runColumns = [
        "id", "job_id", "job_name", "job_version", "host_id", "agent_type", "parameters", "timeout_seconds",
        "queue_timeout_seconds", "status", "trigger", "scheduled_at", "queued_at", "started_at", "finished_at",
        "exit_code", "error_summary", "cancel_requested_at", "dispatch_epoch", "rerun_of", "triggered_by",
        "cancel_requested_by", "attempt", "retry_of", "retry_policy", "held_until",
    ]

    /// `SELECT` of runs: `seq` (column 0), then ``runColumns`` (a run is read `from: 1`).
    static let runSelect = "SELECT seq, " + runColumns.joined(separator: ", ") + " FROM runs"
}

// MARK: Following run changes

extension SQLiteStore {
    /// How often ``followRunChanges(_:)`` reads the change count (one row, from a reader
    /// connection: a few microseconds).
    static let runChangesPollInterval: Duration = .milliseconds(250)

    public func followRunChanges(_ changed: @escaping @Sendable () -> Void) async throws {
        var seen: Int64?
        while true {
            let count = try await read { db in
                try db.query("SELECT count FROM run_changes WHERE id = 1").first?.int64("count") ?? 0
            }
            if count != seen {
                seen = count
                changed()
            }
            try await Task.sleep(for: Self.runChangesPollInterval)
        }
    }
}
