import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Stored rows into values; a row that cannot be read throws ``StoreError/Code/corrupt`` (see ``StoredRow``).
extension SQLiteStore {
    static func apiToken(_ row: SQLiteRow) throws -> APIToken {
        let stored = try StoredRow("api_tokens", id: row.string("id"))
        return APIToken(
            id: stored.id, name: try stored.value(row.string("name"), "name"),
            scope: try stored.known(row.string("scope"), "scope"),
            createdAt: try stored.value(row.date("created_at"), "created_at"), revokedAt: row.date("revoked_at"))
    }

    static func host(_ row: SQLiteRow) throws -> Host {
        let stored = try StoredRow("hosts", id: row.string("id"))
        return Host(
            id: stored.id, name: try stored.value(row.string("name"), "name"),
            managedAgents: Codec.agents(try stored.value(row.string("managed_agents"), "managed_agents")),
            registeredAt: try stored.value(row.date("registered_at"), "registered_at"),
            lastSeenAt: row.date("last_seen_at"),
            version: row.string("version"), heartbeatPartition: row.int("heartbeat_partition").map(Int32.init),
            clockSkewSeconds: row.int("clock_skew_ms").map { Double($0) / 1000 }, revokedAt: row.date("revoked_at"),
            maxConcurrentRuns: row.int("max_concurrent_runs"), runningRuns: row.int("running_runs"))
    }

    static func jobRecord(_ row: SQLiteRow) throws -> JobRecord {
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
            retry: try stored.retryPolicy(row.string("retry_policy"), "retry_policy"),
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
            cancelRequestedAt: row.date(at: first + 17), dispatchEpoch: try column(row.int(at: first + 18), 18),
            rerunOf: row.string(at: first + 19),
            triggeredBy: try stored.requester(row.string(at: first + 20), runColumns[20]),
            cancelRequestedBy: try stored.requester(row.string(at: first + 21), runColumns[21]),
            attempt: try column(row.int(at: first + 22), 22), retryOf: row.string(at: first + 23),
            retryPolicy: try stored.retryPolicy(row.string(at: first + 24), runColumns[24]),
            heldUntil: row.date(at: first + 25))
    }
}
