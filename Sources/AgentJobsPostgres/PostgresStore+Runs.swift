import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Runs

extension PostgresStore {
    /// The one trigger path (manual, API and schedule): the run with its job snapshot and the dispatch
    /// in the outbox, inside the caller's transaction.
    static func trigger(
        _ job: Job, trigger: RunTrigger, scheduledAt: Date?, now: Date, traceParent: String? = nil,
        _ db: PostgresSession
    ) async throws -> Run {
        let run = Run.queued(
            of: job, trigger: trigger, scheduledAt: scheduledAt, triggeredBy: trigger == .schedule ? .schedule : nil,
            at: now)
        try await insertRun(run, now: now, traceParent: traceParent, db)
        return run
    }

    /// Writes a new run and queues its dispatch, refusing a second active run.
    ///
    /// `ON CONFLICT DO NOTHING` rather than catching the unique violation (SQLSTATE 23505) as the
    /// SQLite store does: in PostgreSQL a failed statement aborts the whole transaction, so the
    /// active run could not be looked up after it. A concurrent trigger's uncommitted run makes
    /// the insert wait for that transaction, then see its run.
    /// - Throws: ``StoreError/Code/activeRun`` with the active run's id (`unknown` when the conflict
    ///   is another unique index: a run of the same occurrence).
    static func insertRun(_ run: Run, now: Date, traceParent: String? = nil, _ db: PostgresSession) async throws {
        guard try await insertRunRow(run, db) else {
            let active = try await activeRunId(jobId: run.jobId, db)
            throw activeRunError(jobId: run.jobId, runId: active ?? "unknown")
        }
        try await appendOutbox(.dispatch(run, traceParent: traceParent), now: now, db)
    }

    /// Writes a new run's row (no dispatch) if its job exists and no unique index refuses it.
    /// - Returns: Whether it was written.
    static func insertRunRow(_ run: Run, _ db: PostgresSession) async throws -> Bool {
        let inserted = try await db.query(
            """
            INSERT INTO runs (id, job_id, job_name, job_version, host_id, agent_type, parameters, timeout_seconds,
                              queue_timeout_seconds, status, trigger, scheduled_at, queued_at, dispatch_epoch,
                              rerun_of, triggered_by, attempt, retry_of, retry_policy, held_until)
            SELECT \(run.id), \(run.jobId), \(run.jobName), \(run.jobVersion), \(run.hostId),
                    \(run.agentType.rawValue), \(StoredForm.parameters(run.parameters)),
                    \(run.timeoutSeconds), \(run.queueTimeoutSeconds), \(run.status.rawValue), \(run.trigger.rawValue),
                    \(StoredTime.ms(run.scheduledAt)), \(StoredTime.ms(run.queuedAt)), \(run.dispatchEpoch),
                    \(run.rerunOf), \(run.triggeredBy?.storedForm), \(run.attempt), \(run.retryOf),
                    \(run.retryPolicy?.jsonText), \(StoredTime.ms(run.heldUntil))
            WHERE EXISTS (SELECT 1 FROM jobs WHERE id = \(run.jobId))
            ON CONFLICT DO NOTHING
            RETURNING seq
            """)
        return !inserted.isEmpty
    }

    /// Writes the next attempt of `run`, which has just ended, when its retry policy asks for one
    /// (``Run/nextAttempt(retryable:now:)``), inside the caller's transaction: held until its delay
    /// has passed. Nothing when the job is gone.
    @discardableResult
    static func writeRetry(of run: Run, retryable: Bool, now: Date, _ db: PostgresSession) async throws -> Run? {
        guard let next = run.nextAttempt(retryable: retryable, now: now), try await insertRunRow(next, db) else {
            return nil
        }
        return next
    }

    public func releaseHeldRuns(now: Date, limit: Int) async throws -> [Run] {
        // Most passes find nothing: a read first, so no transaction is opened for that.
        let due = try await read { db in
            try await !db.query(
                """
                SELECT 1 FROM runs
                WHERE held_until IS NOT NULL AND held_until <= \(StoredTime.ms(now)) AND status = 'queued' LIMIT 1
                """
            ).isEmpty
        }
        guard due else { return [] }
        let released = try await write { db -> [Run] in
            // SKIP LOCKED: replicas releasing at the same moment take different runs, and a run a
            // cancel holds is left to it. The UPDATE ... RETURNING clears each mark exactly once.
            let rows = try await db.query(
                """
                UPDATE runs SET held_until = NULL
                WHERE seq IN (
                    SELECT seq FROM runs
                    WHERE held_until IS NOT NULL AND held_until <= \(StoredTime.ms(now)) AND status = 'queued'
                    ORDER BY held_until LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING seq, \(unescaped: Self.runColumns.joined(separator: ", "))
                """)
            var released: [Run] = []
            for row in rows {
                let run = try Self.run(row)
                try await Self.appendOutbox(.dispatch(run), now: now, db)
                released.append(run)
            }
            return released
        }
        if !released.isEmpty { outboxAppended() }
        return released
    }

    /// Writes a row of the outbox, its payload and its unsent mark (with the row's shard) in one
    /// statement, inside the caller's transaction.
    static func appendOutbox(_ command: OutboxCommand, now: Date, _ db: PostgresSession) async throws {
        try await db.query(
            """
            WITH appended AS (
                INSERT INTO outbox (topic, key, type, run_id, created_at, trace_parent)
                VALUES (\(command.topic), \(command.key), \(command.type), \(command.runId), \(StoredTime.ms(now)),
                        \(command.traceParent))
                RETURNING seq
            ), payloads AS (
                INSERT INTO outbox_payloads (seq, payload)
                SELECT seq, \(ByteBuffer(bytes: command.payload)) FROM appended
            )
            INSERT INTO outbox_unsent (seq, shard) SELECT seq, agentjobs_outbox_shard(\(command.key)) FROM appended
            """)
    }

    /// Queues a `RunCancel` of `run` for its host, inside the caller's transaction.
    static func enqueueCancel(for run: Run, now: Date, _ db: PostgresSession) async throws {
        try await appendOutbox(.cancel(run, requestedAt: now), now: now, db)
    }

    static func activeRunId(jobId: String, _ db: PostgresSession) async throws -> String? {
        guard
            let row = try await db.query(
                "SELECT id FROM runs WHERE job_id = \(jobId) AND status IN ('queued', 'running')"
            ).first
        else { return nil }
        return try StoredValues(row, table: "runs").identified().id
    }

    /// ``StoreError/Code/activeRun`` with the same message as the SQLite store's.
    static func activeRunError(jobId: String, runId: String) -> StoreError {
        StoreError(
            .activeRun,
            "job \(jobId) already has an active run (\(runId)); wait for it to finish or cancel it first",
            activeRunId: runId)
    }

    public func run(id: String) async throws -> Run? {
        try await read { db in
            try await db.query("\(unescaped: Self.runSelect) WHERE id = \(id)").first.map { try Self.run($0) }
        }
    }

    public func listRuns(_ filter: RunFilter, cursor: String?, limit: Int) async throws -> RunPage {
        let limit = max(0, limit)
        var conditions: [String] = []
        var bindings = PostgresBindings()
        if let cursor {
            guard let sequence = PageCursor.decode(cursor) else { throw PageCursor.malformed }
            bindings.append(sequence)
            conditions.append("seq < $\(bindings.count)")
        }
        for (column, value) in [
            ("job_id", filter.jobId), ("host_id", filter.hostId), ("agent_type", filter.agentType?.rawValue),
            ("status", filter.status?.rawValue),
        ] {
            guard let value else { continue }
            bindings.append(value)
            conditions.append("\(column) = $\(bindings.count)")
        }
        for (comparison, date) in [(">=", filter.queuedSince), ("<", filter.queuedUntil)] {
            guard let date else { continue }
            bindings.append(StoredTime.ms(date))
            conditions.append("queued_at \(comparison) $\(bindings.count)")
        }
        bindings.append(limit + 1)
        let sql =
            Self.runSelect + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY seq DESC LIMIT $\(bindings.count)"
        let query = PostgresQuery(unsafeSQL: sql, binds: bindings)
        return try await read { db in
            let rows = try await db.query(query)
            let page = rows.prefix(limit)
            var next: String?
            if rows.count > limit, let last = page.last {
                next = PageCursor.encode(try StoredValues(last, table: "runs").value("seq", Int64.self))
            }
            return RunPage(runs: try page.map { try Self.run($0) }, nextCursor: next)
        }
    }

    public func requestCancel(runId: String, by requester: RunRequester?, now: Date) async throws -> CancelOutcome {
        let (outcome, appended) = try await write { db -> (CancelOutcome, Bool) in
            guard
                var run = try await db.query("\(unescaped: Self.runSelect) WHERE id = \(runId) FOR UPDATE").first.map({
                    try Self.run($0)
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
                withdrawn = try await Self.withdrawDispatch(runId: runId, db)
            }
            run = run.cancelRequested(at: now, by: requester, dispatchWithdrawn: withdrawn)
            try await db.query(
                """
                UPDATE runs SET status = \(run.status.rawValue), cancel_requested_at = \(StoredTime.ms(now)),
                    finished_at = \(StoredTime.ms(run.finishedAt)), cancel_requested_by = \(requester?.storedForm),
                    held_until = NULL
                WHERE id = \(runId)
                """)
            if !held { try await Self.enqueueCancel(for: run, now: now, db) }
            if withdrawn { try await Self.runsEnded([(run, false)], now: now, db) }
            try await Self.appendAudit(.cancelRequested(run, actor: requester, withdrawn: withdrawn, at: now), db)
            return (withdrawn ? .canceled(run) : .requested(run), !held)
        }
        if appended { outboxAppended() }
        return outcome
    }

    /// Deletes the run's dispatch from the outbox if no relay has marked it sent.
    ///
    /// Its unsent mark is locked first: a relay marking it sent at the same moment either commits
    /// before (the row is skipped: not withdrawn) or waits for this transaction (and finds the row gone).
    /// - Returns: Whether a dispatch was withdrawn.
    private static func withdrawDispatch(runId: String, _ db: PostgresSession) async throws -> Bool {
        let unsent = try await db.query(
            """
            SELECT u.seq FROM outbox_unsent u JOIN outbox o ON o.seq = u.seq
            WHERE o.run_id = \(runId) AND o.type = \(RunDispatch.type)
            ORDER BY u.seq FOR UPDATE OF u
            """
        ).map { try StoredValues($0, table: "outbox_unsent").value("seq", Int64.self) }
        guard !unsent.isEmpty else { return false }
        let deleted = try await db.query("DELETE FROM outbox WHERE seq = ANY(\(unsent)) RETURNING seq")
        return !deleted.isEmpty
    }
}
