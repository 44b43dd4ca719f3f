import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Triggering a run (the API's and the console's hot path)

extension PostgresStore {
    public func triggerRun(
        jobId: String, trigger: RunTrigger, scheduledAt: Date?, rerunOf: String?, triggeredBy: RunRequester?, now: Date,
        traceParent: String?
    ) async throws -> Run {
        let runId = Identifier.makeTimeOrdered("run", at: now)
        // Two round trips, no transaction block, and both statements prepared once per connection
        // (a trigger's statements cost PostgreSQL more to parse and plan than to run): the job is
        // read, then one statement (atomic on its own) writes the run and its dispatch only if the
        // job still has the version read. Its `FOR SHARE` makes an edit or a delete of the job wait
        // for the trigger, and the trigger for them, so the run copies a definition that is current
        // when it commits. A job edited in between is read again.
        for _ in 1...Self.maxJobReads {
            let written: Run? = try await write(transaction: false) { db in
                guard let row = try await db.execute(JobToTrigger(jobId: jobId)).first else {
                    throw StoreError(.notFound, "no job with id \(jobId)")
                }
                let stored = StoredValues(row, table: "jobs").identified(as: jobId)
                let agentType: AgentType = try stored.known("agent_type")
                let parametersText = try stored.string(required: "parameters")
                let job = JobSnapshot(
                    jobId: jobId, jobName: try stored.string(required: "name"),
                    jobVersion: try stored.int(required: "version"),
                    hostId: try stored.string(required: "host_id"), agentType: agentType,
                    parameters: try stored.parameters("parameters", agentType: agentType),
                    timeoutSeconds: try stored.int(required: "timeout_seconds"),
                    queueTimeoutSeconds: try stored.int(required: "queue_timeout_seconds"),
                    retryPolicy: try stored.retryPolicy("retry_policy"))
                let run = Run.queued(
                    id: runId, of: job, trigger: trigger, scheduledAt: scheduledAt, rerunOf: rerunOf,
                    triggeredBy: triggeredBy, at: now)
                let insert = InsertRunIfJobUnchanged(
                    run: run, parametersText: parametersText, now: now, traceParent: traceParent)
                guard let (jobs, runs) = try await db.execute(insert).first else {
                    throw StoreError(.unavailable, "the trigger statement returned no row")
                }
                if runs == 1 { return run }
                if jobs == 0 { return nil }  // edited or deleted since the read: read it again
                let active = try await Self.activeRunId(jobId: jobId, db)
                // No active run any more: it ended between the statement and this read. Again.
                if active == nil && scheduledAt == nil { return nil }
                throw Self.activeRunError(jobId: jobId, runId: active ?? "unknown")
            }
            if let written {
                outboxAppended()
                return written
            }
        }
        throw StoreError(
            .conflict,
            "job \(jobId) was changed (or its active run ended) \(Self.maxJobReads) times while it was being"
                + " triggered; try again")
    }

    /// How many times ``triggerRun(jobId:trigger:scheduledAt:now:)`` reads a job edited under it (or
    /// tries again when the active run it met ended before it could be named).
    private static let maxJobReads = 5
}

/// The columns of a job that a run copies.
private struct JobToTrigger: PostgresPreparedStatement {
    static let name = "agentjobs_job_to_trigger_v2"  // v2: the retry policy
    static let sql = """
        SELECT id, name, version, host_id, agent_type, parameters, timeout_seconds, queue_timeout_seconds,
            retry_policy
        FROM jobs WHERE id = $1
        """
    static let bindingDataTypes: [PostgresDataType] = [.text]
    typealias Row = PostgresRow

    let jobId: String

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(jobId)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) -> PostgresRow { row }
}

/// ``PostgresStore/insertRun(_:now:_:)`` and ``PostgresStore/appendOutbox(_:now:_:)`` (keep the three
/// in step: the same columns and rows), with the run's audit entry, as one statement that first locks the run's
/// job `FOR SHARE` and writes nothing when the job is gone or has another version than the run's.
/// Its row counts the job (0: changed or deleted) and the run written (0 with a job: the job has an
/// active run).
private struct InsertRunIfJobUnchanged: PostgresPreparedStatement {
    static let name = "agentjobs_insert_run_if_job_unchanged_v5"  // v5: the retry policy
    static let sql = """
        WITH job AS (
            SELECT id FROM jobs WHERE id = $2 AND version = $4 FOR SHARE
        ), inserted_run AS (
            INSERT INTO runs (id, job_id, job_name, job_version, host_id, agent_type, parameters, timeout_seconds,
                              queue_timeout_seconds, status, trigger, scheduled_at, queued_at, dispatch_epoch,
                              rerun_of, triggered_by, retry_policy)
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $21, $22, $26 FROM job
            ON CONFLICT DO NOTHING
            RETURNING id
        ), appended AS (
            INSERT INTO outbox (topic, key, type, run_id, created_at, trace_parent)
            SELECT $15, $16, $17, id, $18, $20 FROM inserted_run
            RETURNING seq
        ), payloads AS (
            INSERT INTO outbox_payloads (seq, payload) SELECT seq, $19 FROM appended
        ), unsent AS (
            INSERT INTO outbox_unsent (seq, shard) SELECT seq, agentjobs_outbox_shard($16) FROM appended
        ), audited AS (
            INSERT INTO audit_log (at, action, actor, actor_id, target_kind, target_id, target_name, summary)
            SELECT $18, $23, $22, $24, 'run', id, $3, $25 FROM inserted_run WHERE $23 IS NOT NULL
        )
        SELECT (SELECT count(*) FROM job), (SELECT count(*) FROM inserted_run)
        """
    /// Declared rather than inferred from the first execution's bindings, whose `scheduled_at` may be
    /// a NULL of no type. Integers are `int8` as Swift's `Int`; PostgreSQL casts them to the `INT`
    /// columns, refusing a value out of range.
    static let bindingDataTypes: [PostgresDataType] = [
        .text, .text, .text, .int8, .text, .text, .text, .int8, .int8, .text, .text, .int8, .int8, .int8,
        .text, .text, .text, .int8, .bytea, .text, .text, .text, .text, .text, .text, .text,
    ]
    typealias Row = (Int64, Int64)

    let run: Run
    let parametersText: String
    let now: Date
    let traceParent: String?

    func makeBindings() -> PostgresBindings {
        let command = OutboxCommand.dispatch(run, traceParent: traceParent)
        var bindings = PostgresBindings(capacity: Self.bindingDataTypes.count)
        bindings.append(run.id)
        bindings.append(run.jobId)
        bindings.append(run.jobName)
        bindings.append(run.jobVersion)
        bindings.append(run.hostId)
        bindings.append(run.agentType.rawValue)
        bindings.append(parametersText)
        bindings.append(run.timeoutSeconds)
        bindings.append(run.queueTimeoutSeconds)
        bindings.append(run.status.rawValue)
        bindings.append(run.trigger.rawValue)
        bindings.append(StoredTime.ms(run.scheduledAt))
        bindings.append(StoredTime.ms(run.queuedAt))
        bindings.append(run.dispatchEpoch)
        bindings.append(command.topic)
        bindings.append(command.key)
        bindings.append(command.type)
        bindings.append(StoredTime.ms(now))
        bindings.append(ByteBuffer(bytes: command.payload))
        bindings.append(command.traceParent)
        bindings.append(run.rerunOf)
        bindings.append(run.triggeredBy?.storedForm)
        // Every trigger but the schedule's is audited, in the same statement.
        let audit = run.trigger == .schedule ? nil : AuditEntry.runTriggered(run, actor: run.triggeredBy, at: now)
        bindings.append(audit?.action.rawValue)
        bindings.append(audit?.actor?.id)
        bindings.append(audit?.summary)
        bindings.append(run.retryPolicy?.jsonText)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> (Int64, Int64) { try row.decode((Int64, Int64).self) }
}
