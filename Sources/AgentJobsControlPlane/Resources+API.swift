import AgentJobsCore
import AgentJobsStore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A host as the API shows it.
struct HostResource: Encodable {
    var id: String
    var name: String
    var managedAgents: [AgentType]
    var status: HostStatus
    /// Why the status is `unknown`; `null` otherwise.
    var statusReason: String?
    var lastSeenAt: Date?
    /// The host's clock minus the control plane's at its last heartbeat, in seconds.
    var clockSkewSeconds: Double?
    var registeredAt: Date
    var version: String?
    /// When an administrator revoked the host's credential.
    var revokedAt: Date?
    /// Its concurrency limit, as of its last heartbeat; nil for none.
    var maxConcurrentRuns: Int?
    /// The runs it had launched and not yet ended, as of its last heartbeat.
    var runningRuns: Int?

    init(_ host: Host, liveness: HostLiveness) {
        id = host.id
        name = host.name
        managedAgents = host.managedAgents
        status = liveness.status
        statusReason = liveness.reason
        lastSeenAt = host.lastSeenAt
        clockSkewSeconds = host.clockSkewSeconds
        registeredAt = host.registeredAt
        version = host.version
        revokedAt = host.revokedAt
        maxConcurrentRuns = host.maxConcurrentRuns
        runningRuns = host.runningRuns
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(managedAgents, forKey: .managedAgents)
        try container.encode(status, forKey: .status)
        try container.encode(statusReason, forKey: .statusReason)
        try container.encode(lastSeenAt, forKey: .lastSeenAt)
        try container.encode(clockSkewSeconds, forKey: .clockSkewSeconds)
        try container.encode(registeredAt, forKey: .registeredAt)
        try container.encode(version, forKey: .version)
        try container.encode(revokedAt, forKey: .revokedAt)
        try container.encode(maxConcurrentRuns, forKey: .maxConcurrentRuns)
        try container.encode(runningRuns, forKey: .runningRuns)
    }

    enum CodingKeys: String, CodingKey {
        case id, name, managedAgents, status, statusReason, lastSeenAt, clockSkewSeconds, registeredAt, version
        case revokedAt, maxConcurrentRuns, runningRuns
    }
}

/// A run as the API shows it. Absent values are `null`, never missing, so clients see every field.
struct RunResource: Encodable {
    var run: Run
    /// For a queued run on `GET /api/v1/runs/{id}`: why it has not started yet.
    var waitingReason: String? = nil

    enum CodingKeys: String, CodingKey {
        case id, jobId, jobName, jobVersion, hostId, agentType, parameters, timeoutSeconds, queueTimeoutSeconds, status
        case trigger, scheduledAt, queuedAt, startedAt, finishedAt, durationMs, exitCode, errorSummary,
            cancelRequestedAt
        case dispatchEpoch, waitingReason, rerunOf, triggeredBy, cancelRequestedBy
        case attempt, maxAttempts, retryOf, retryPolicy, heldUntil
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(run.id, forKey: .id)
        try container.encode(run.jobId, forKey: .jobId)
        try container.encode(run.jobName, forKey: .jobName)
        try container.encode(run.jobVersion, forKey: .jobVersion)
        try container.encode(run.hostId, forKey: .hostId)
        try container.encode(run.agentType, forKey: .agentType)
        try container.encode(run.parameters, forKey: .parameters)
        try container.encode(run.timeoutSeconds, forKey: .timeoutSeconds)
        try container.encode(run.queueTimeoutSeconds, forKey: .queueTimeoutSeconds)
        try container.encode(run.status, forKey: .status)
        try container.encode(run.trigger, forKey: .trigger)
        try container.encode(run.scheduledAt, forKey: .scheduledAt)
        try container.encode(run.queuedAt, forKey: .queuedAt)
        try container.encode(run.startedAt, forKey: .startedAt)
        try container.encode(run.finishedAt, forKey: .finishedAt)
        try container.encode(run.durationMs, forKey: .durationMs)
        try container.encode(run.exitCode, forKey: .exitCode)
        try container.encode(run.errorSummary, forKey: .errorSummary)
        try container.encode(run.cancelRequestedAt, forKey: .cancelRequestedAt)
        try container.encode(run.dispatchEpoch, forKey: .dispatchEpoch)
        try container.encode(waitingReason, forKey: .waitingReason)
        try container.encode(run.rerunOf, forKey: .rerunOf)
        try container.encode(run.triggeredBy, forKey: .triggeredBy)
        try container.encode(run.cancelRequestedBy, forKey: .cancelRequestedBy)
        try container.encode(run.attempt, forKey: .attempt)
        try container.encode(run.maxAttempts, forKey: .maxAttempts)
        try container.encode(run.retryOf, forKey: .retryOf)
        try container.encode(run.retryPolicy, forKey: .retryPolicy)
        try container.encode(run.heldUntil, forKey: .heldUntil)
    }
}

extension RunResource {
    /// The same bytes as `JSONResponse.encoder()` gives for this resource, written directly:
    /// `JSONEncoder` costs ~50 µs per run on Linux, on every trigger's response.
    var jsonBytes: [UInt8] {
        var writer = JSONWriter(capacity: 768)
        writer.beginObject()
        writer.key("agentType")
        writer.string(run.agentType.rawValue)
        writer.key("attempt")
        writer.int(run.attempt)
        writer.key("cancelRequestedAt")
        writer.optionalDate(run.cancelRequestedAt)
        writer.key("cancelRequestedBy")
        if let requester = run.cancelRequestedBy { requester.writeJSON(into: &writer) } else { writer.null() }
        writer.key("dispatchEpoch")
        writer.int(run.dispatchEpoch)
        writer.key("durationMs")
        writer.optionalInt(run.durationMs)
        writer.key("errorSummary")
        writer.optionalString(run.errorSummary)
        writer.key("exitCode")
        writer.optionalInt(run.exitCode)
        writer.key("finishedAt")
        writer.optionalDate(run.finishedAt)
        writer.key("heldUntil")
        writer.optionalDate(run.heldUntil)
        writer.key("hostId")
        writer.string(run.hostId)
        writer.key("id")
        writer.string(run.id)
        writer.key("jobId")
        writer.string(run.jobId)
        writer.key("jobName")
        writer.string(run.jobName)
        writer.key("jobVersion")
        writer.int(run.jobVersion)
        writer.key("maxAttempts")
        writer.int(run.maxAttempts)
        writer.key("parameters")
        run.parameters.write(to: &writer)
        writer.key("queueTimeoutSeconds")
        writer.int(run.queueTimeoutSeconds)
        writer.key("queuedAt")
        writer.date(run.queuedAt)
        writer.key("rerunOf")
        writer.optionalString(run.rerunOf)
        writer.key("retryOf")
        writer.optionalString(run.retryOf)
        writer.key("retryPolicy")
        if let policy = run.retryPolicy { policy.writeJSON(into: &writer) } else { writer.null() }
        writer.key("scheduledAt")
        writer.optionalDate(run.scheduledAt)
        writer.key("startedAt")
        writer.optionalDate(run.startedAt)
        writer.key("status")
        writer.string(run.status.rawValue)
        writer.key("timeoutSeconds")
        writer.int(run.timeoutSeconds)
        writer.key("trigger")
        writer.string(run.trigger.rawValue)
        writer.key("triggeredBy")
        if let requester = run.triggeredBy { requester.writeJSON(into: &writer) } else { writer.null() }
        writer.key("waitingReason")
        writer.optionalString(waitingReason)
        writer.endObject()
        return writer.bytes
    }
}

/// A job as the API shows it, with a short view of its most recent run.
struct JobResource: Encodable {
    var record: JobRecord

    struct LastRun: Encodable {
        var id: String
        var status: RunStatus
        var queuedAt: Date
        var finishedAt: Date?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(id, forKey: .id)
            try container.encode(status, forKey: .status)
            try container.encode(queuedAt, forKey: .queuedAt)
            try container.encode(finishedAt, forKey: .finishedAt)
        }

        enum CodingKeys: String, CodingKey { case id, status, queuedAt, finishedAt }
    }

    enum CodingKeys: String, CodingKey {
        case id, name, hostId, agentType, parameters, schedule, timeoutSeconds, queueTimeoutSeconds, version
        case createdAt, updatedAt, lastRun, nextFireAt, retry
    }

    func encode(to encoder: any Encoder) throws {
        let job = record.job
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(job.id, forKey: .id)
        try container.encode(job.name, forKey: .name)
        try container.encode(job.hostId, forKey: .hostId)
        try container.encode(job.agentType, forKey: .agentType)
        try container.encode(job.parameters, forKey: .parameters)
        try container.encode(job.schedule, forKey: .schedule)
        try container.encode(job.timeoutSeconds, forKey: .timeoutSeconds)
        try container.encode(job.queueTimeoutSeconds, forKey: .queueTimeoutSeconds)
        try container.encode(job.retry, forKey: .retry)
        try container.encode(job.version, forKey: .version)
        try container.encode(job.createdAt, forKey: .createdAt)
        try container.encode(job.updatedAt, forKey: .updatedAt)
        try container.encode(
            record.lastRun.map {
                LastRun(id: $0.id, status: $0.status, queuedAt: $0.queuedAt, finishedAt: $0.finishedAt)
            },
            forKey: .lastRun)
        let nextFire = job.schedule?.paused == false ? record.scheduleState?.nextOccurrence : nil
        try container.encode(nextFire, forKey: .nextFireAt)
    }
}

/// An API token as listed (never its secret).
struct TokenResource: Encodable {
    var id: String
    var name: String
    var scope: TokenScope
    var createdAt: Date
    var revokedAt: Date?

    init(_ token: APIToken) {
        id = token.id
        name = token.name
        scope = token.scope
        createdAt = token.createdAt
        revokedAt = token.revokedAt
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(scope, forKey: .scope)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(revokedAt, forKey: .revokedAt)
    }

    enum CodingKeys: String, CodingKey { case id, name, scope, createdAt, revokedAt }
}

/// A registration token as listed (never its secret), with where it stands.
struct RegistrationTokenResource: Encodable {
    var id: String
    var state: RegistrationTokenState
    var createdAt: Date
    var expiresAt: Date
    var usedAt: Date?
    var usedByHostId: String?
    var revokedAt: Date?

    /// - Parameter now: The time its state is judged at (`expired` or not).
    init(_ token: RegistrationToken, now: Date) {
        id = token.id
        state = token.state(at: now)
        createdAt = token.createdAt
        expiresAt = token.expiresAt
        usedAt = token.usedAt
        usedByHostId = token.usedByHostId
        revokedAt = token.revokedAt
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(state, forKey: .state)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(expiresAt, forKey: .expiresAt)
        try container.encode(usedAt, forKey: .usedAt)
        try container.encode(usedByHostId, forKey: .usedByHostId)
        try container.encode(revokedAt, forKey: .revokedAt)
    }

    enum CodingKeys: String, CodingKey { case id, state, createdAt, expiresAt, usedAt, usedByHostId, revokedAt }
}
