import AgentJobsCore
import AgentJobsStore
import Logging
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One pooled connection, in or out of a transaction, and the logger its queries log to.
struct PostgresSession {
    let connection: PostgresConnection
    let logger: Logger

    /// Runs `query` and reads all its rows, so that an error of the statement surfaces here (not
    /// while some later code iterates) and the next statement finds the connection idle.
    @discardableResult
    func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try checkOpen()
        return try await connection.query(query, logger: logger).collect()
    }

    /// Fails when the connection has closed (the server ended the session): postgres-nio never
    /// answers a query written to a closed connection (``PostgresStore/Limit``).
    private func checkOpen() throws {
        if connection.isClosed {
            throw StoreError(.unavailable, "the connection to the database closed")
        }
    }

    /// Runs a prepared statement (prepared on this connection at its first use) and reads all its rows.
    ///
    /// A failure closes the connection, so that the pool opens a new one: postgres-nio keeps a failed
    /// preparation's error for the statement's name and returns it for every later use on that
    /// connection without preparing again, so one preparation that met a transient failure (a
    /// `lock_timeout` behind a migration's `ALTER TABLE`, a canceled statement) would otherwise fail
    /// every trigger on the connection until it closed, which a busy pool's connections never do.
    func execute<Statement: PostgresPreparedStatement>(_ statement: Statement) async throws -> [Statement.Row] {
        do {
            try checkOpen()
            var rows: [Statement.Row] = []
            for try await row in try await connection.execute(statement, logger: logger) { rows.append(row) }
            return rows
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Runs `body` between `BEGIN` and `COMMIT`, rolling back when it throws. (Not postgres-nio's
    /// `withTransaction`, which wraps every error, the store's own included, in a
    /// `PostgresTransactionError`.)
    func transaction<T>(_ body: (PostgresSession) async throws -> T) async throws -> T {
        try await query("BEGIN")
        do {
            let value = try await body(self)
            try await query("COMMIT")
            return value
        } catch {
            // A failed COMMIT has ended the transaction already; a ROLLBACK then only warns. On a
            // closed connection the server has rolled back.
            if !connection.isClosed { _ = try? await query("ROLLBACK") }
            throw error
        }
    }
}

/// Reading one row of `table` into values. A value that is missing, that does not decode, or that
/// this build does not know is a ``StoreError/Code/corrupt`` naming the table, the column and the
/// row — never a plausible default (as `StoredRow` does for the SQLite store).
struct StoredValues {
    let table: String
    /// The row's id (its primary key as text), for messages.
    private(set) var id = "?"
    private let cells: PostgresRandomAccessRow
    /// The prefix of this table's columns in the result (`r_` for the last run joined to a job).
    private let prefix: String

    init(_ row: PostgresRow, table: String, prefix: String = "") {
        self.init(row.makeRandomAccess(), table: table, prefix: prefix)
    }

    init(_ cells: PostgresRandomAccessRow, table: String, prefix: String = "") {
        self.cells = cells
        self.table = table
        self.prefix = prefix
    }

    /// The same reader for the columns of another table in the same result row.
    func columns(of table: String, prefix: String) -> StoredValues {
        StoredValues(cells, table: table, prefix: prefix)
    }

    /// The row named by its text `column` in messages.
    /// - Throws: ``StoreError/Code/corrupt`` when the row has no value there.
    func identified(by column: String = "id") throws -> StoredValues {
        guard let id = try optional(column, String.self) else {
            throw StoreError(.corrupt, "\(table): a row has no \(column)")
        }
        return identified(as: id)
    }

    /// The row named `id` in messages.
    func identified(as id: String) -> StoredValues {
        var copy = self
        copy.id = id
        return copy
    }

    /// A column that may be NULL.
    func optional<T: PostgresDecodable>(_ column: String, _ type: T.Type) throws -> T? {
        let name = prefix + column
        guard cells.contains(name) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) is not in the result")
        }
        let cell = cells[name]
        guard cell.bytes != nil else { return nil }
        do {
            return try cell.decode(T.self)
        } catch {
            throw StoreError(
                .corrupt, "\(table).\(column) of \(id) holds a \(cell.dataType) value, which is not a \(T.self)")
        }
    }

    /// A column that must hold a value.
    func value<T: PostgresDecodable>(_ column: String, _ type: T.Type) throws -> T {
        guard let value = try optional(column, type) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) is missing")
        }
        return value
    }

    func string(_ column: String) throws -> String? { try optional(column, String.self) }
    func string(required column: String) throws -> String { try value(column, String.self) }
    func int(_ column: String) throws -> Int? { try optional(column, Int.self) }
    func int(required column: String) throws -> Int { try value(column, Int.self) }
    func date(_ column: String) throws -> Date? { try optional(column, Int64.self).map(StoredTime.date) }
    func date(required column: String) throws -> Date { StoredTime.date(try value(column, Int64.self)) }

    /// A column that must hold one of the values of `T`.
    func known<T: RawRepresentable>(_ column: String) throws -> T where T.RawValue == String {
        let raw = try value(column, String.self)
        guard let known = T(rawValue: raw) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) holds \"\(raw)\", which this build does not know")
        }
        return known
    }

    /// A requester in its stored form (``RunRequester/storedForm``), or nil for a NULL column.
    func requester(_ column: String) throws -> RunRequester? {
        guard let text = try string(column) else { return nil }
        guard let requester = RunRequester(storedForm: text) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) holds \"\(text)\", which this build does not know")
        }
        return requester
    }

    /// A retry policy stored as JSON text (``RetryPolicy/jsonText``), or nil for a NULL column.
    func retryPolicy(_ column: String) throws -> RetryPolicy? {
        guard let text = try string(column) else { return nil }
        guard let policy = RetryPolicy.parseStored(text) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) is not a retry policy")
        }
        return policy
    }

    /// Agent parameters stored as JSON text, for an agent of `agentType`.
    func parameters(_ column: String, agentType: AgentType) throws -> AgentParameters {
        let text = try value(column, String.self)
        guard let parameters = AgentParameters.parseStored(text) else {
            throw StoreError(
                .corrupt, "\(table).\(column) of \(id) is not the parameters of a \(agentType.rawValue) agent")
        }
        return parameters
    }

    /// A list of agent types stored as a JSON array of names. Names this build does not know are
    /// left out, as the SQLite store does; text that is not such an array is corrupt.
    func agents(_ column: String) throws -> [AgentType] {
        let text = try value(column, String.self)
        guard let names = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) is not a JSON array of agent types")
        }
        return names.compactMap(AgentType.init(rawValue:))
    }
}

// MARK: Stored forms

/// The stored forms of values, the same text as the SQLite store writes.
enum StoredForm {
    /// A list of agent types as JSON text (what the SQLite store's `Codec.agents` writes).
    static func agents(_ agents: [AgentType]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(agents)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }

    /// Agent parameters as JSON text.
    static func parameters(_ parameters: AgentParameters) -> String { parameters.jsonText }
}

// MARK: Rows into values

extension PostgresStore {
    /// The columns a ``Run`` is made of.
    static let runColumns = [
        "id", "job_id", "job_name", "job_version", "host_id", "agent_type", "parameters", "timeout_seconds",
        "queue_timeout_seconds", "status", "trigger", "scheduled_at", "queued_at", "started_at", "finished_at",
        "exit_code", "error_summary", "cancel_requested_at", "dispatch_epoch", "rerun_of", "triggered_by",
        "cancel_requested_by", "attempt", "retry_of", "retry_policy", "held_until",
    ]

    /// `SELECT` of runs: `seq`, then ``runColumns``.
    static let runSelect = "SELECT seq, " + runColumns.joined(separator: ", ") + " FROM runs"

    static func run(_ row: PostgresRow) throws -> Run {
        try run(StoredValues(row, table: "runs").identified())
    }

    /// The run in `stored` (identified by its id).
    static func run(_ stored: StoredValues) throws -> Run {
        let agentType: AgentType = try stored.known("agent_type")
        return Run(
            id: stored.id, jobId: try stored.string(required: "job_id"),
            jobName: try stored.string(required: "job_name"), jobVersion: try stored.int(required: "job_version"),
            hostId: try stored.string(required: "host_id"), agentType: agentType,
            parameters: try stored.parameters("parameters", agentType: agentType),
            timeoutSeconds: try stored.int(required: "timeout_seconds"),
            queueTimeoutSeconds: try stored.int(required: "queue_timeout_seconds"),
            status: try stored.known("status"), trigger: try stored.known("trigger"),
            scheduledAt: try stored.date("scheduled_at"), queuedAt: try stored.date(required: "queued_at"),
            startedAt: try stored.date("started_at"), finishedAt: try stored.date("finished_at"),
            exitCode: try stored.int("exit_code"), errorSummary: try stored.string("error_summary"),
            cancelRequestedAt: try stored.date("cancel_requested_at"),
            dispatchEpoch: try stored.int(required: "dispatch_epoch"), rerunOf: try stored.string("rerun_of"),
            triggeredBy: try stored.requester("triggered_by"),
            cancelRequestedBy: try stored.requester("cancel_requested_by"),
            attempt: try stored.int(required: "attempt"),
            retryOf: try stored.string("retry_of"), retryPolicy: try stored.retryPolicy("retry_policy"),
            heldUntil: try stored.date("held_until"))
    }

    static func apiToken(_ row: PostgresRow) throws -> APIToken {
        let stored = try StoredValues(row, table: "api_tokens").identified()
        return APIToken(
            id: stored.id, name: try stored.string(required: "name"), scope: try stored.known("scope"),
            createdAt: try stored.date(required: "created_at"), revokedAt: try stored.date("revoked_at"))
    }

    static func registrationToken(_ row: PostgresRow) throws -> RegistrationToken {
        let stored = try StoredValues(row, table: "registration_tokens").identified()
        return RegistrationToken(
            id: stored.id, createdAt: try stored.date(required: "created_at"),
            expiresAt: try stored.date(required: "expires_at"), usedAt: try stored.date("used_at"),
            usedByHostId: try stored.string("used_by_host_id"), revokedAt: try stored.date("revoked_at"))
    }

    static func host(_ row: PostgresRow) throws -> Host {
        let stored = try StoredValues(row, table: "hosts").identified()
        return Host(
            id: stored.id, name: try stored.string(required: "name"),
            managedAgents: try stored.agents("managed_agents"),
            registeredAt: try stored.date(required: "registered_at"), lastSeenAt: try stored.date("last_seen_at"),
            version: try stored.string("version"),
            heartbeatPartition: try stored.optional("heartbeat_partition", Int32.self),
            clockSkewSeconds: try stored.optional("clock_skew_ms", Int64.self).map { Double($0) / 1000 },
            revokedAt: try stored.date("revoked_at"), maxConcurrentRuns: try stored.int("max_concurrent_runs"),
            runningRuns: try stored.int("running_runs"))
    }

    /// A row of ``jobSelect``: the job's columns, and its last run's prefixed `r_`.
    static func jobRecord(_ row: PostgresRow) throws -> JobRecord {
        let stored = try StoredValues(row, table: "jobs").identified()
        let agentType: AgentType = try stored.known("agent_type")
        let schedule = try stored.string("schedule_cron").map { cron in
            JobSchedule(
                cron: cron, timezone: try stored.string(required: "schedule_timezone"),
                paused: try stored.value("schedule_paused", Bool.self), missedPolicy: try stored.known("missed_policy"),
                catchUpWindowSeconds: try stored.int(required: "catch_up_window_seconds"),
                jitterSeconds: try stored.int(required: "jitter_seconds"))
        }
        let job = Job(
            id: stored.id, name: try stored.string(required: "name"), hostId: try stored.string(required: "host_id"),
            agentType: agentType, parameters: try stored.parameters("parameters", agentType: agentType),
            schedule: schedule, timeoutSeconds: try stored.int(required: "timeout_seconds"),
            queueTimeoutSeconds: try stored.int(required: "queue_timeout_seconds"),
            retry: try stored.retryPolicy("retry_policy"),
            version: try stored.int(required: "version"), createdAt: try stored.date(required: "created_at"),
            updatedAt: try stored.date(required: "updated_at"))
        let state = try stored.date("schedule_cursor").map { cursor in
            ScheduleState(
                cursor: cursor, nextOccurrence: try stored.date("next_occurrence_at"),
                dueAt: try stored.date("schedule_due_at"))
        }
        let lastRun = stored.columns(of: "runs", prefix: "r_")
        return JobRecord(
            job: job, lastRun: try lastRun.string("id") == nil ? nil : try run(lastRun.identified()),
            scheduleState: schedule == nil ? nil : state)
    }

    static func watermark(_ row: PostgresRow) throws -> HostTrackingWatermark {
        let stored = StoredValues(row, table: "host_tracking")
        let partition = try stored.value("partition", Int32.self)
        let identified = stored.identified(as: String(partition))
        return HostTrackingWatermark(
            partition: partition, since: try identified.date(required: "since"),
            readThrough: try identified.date(required: "read_through"),
            trackerId: try identified.string(required: "tracker_id"))
    }

    static func occurrence(_ row: PostgresRow, jobId: String) throws -> ScheduleOccurrence {
        let unnamed = StoredValues(row, table: "schedule_occurrences")
        let scheduledAt = try unnamed.optional("scheduled_at", Int64.self)
        let stored = unnamed.identified(as: "\(jobId) at \(scheduledAt.map { String($0) } ?? "?")")
        return ScheduleOccurrence(
            jobId: jobId, scheduledAt: StoredTime.date(try stored.value("scheduled_at", Int64.self)),
            outcome: try stored.known("outcome"), runId: try stored.string("run_id"),
            activeRunId: try stored.string("active_run_id"), reason: try stored.string("reason"),
            recordedAt: try stored.date(required: "recorded_at"))
    }

    static func outboxMessage(_ row: PostgresRow) throws -> OutboxMessage {
        let unnamed = StoredValues(row, table: "outbox")
        let sequence = try unnamed.value("seq", Int64.self)
        let stored = unnamed.identified(as: String(sequence))
        let payload = try stored.value("payload", ByteBuffer.self)
        return OutboxMessage(
            sequence: sequence, topic: try stored.string(required: "topic"), key: try stored.string(required: "key"),
            runId: try stored.string("run_id"), type: try stored.string(required: "type"),
            payload: Array(payload.readableBytesView), createdAt: try stored.date(required: "created_at"),
            traceParent: TraceParent.validated(try stored.string("trace_parent")))
    }
}
