#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Where a run's status stands in its lifecycle.
///
/// ```
/// queued ──► running ──► succeeded | failed | timed_out | canceled
///    └──────────────────► failed | timed_out | canceled      (never started)
/// ```
public enum RunStatus: String, Sendable, Codable, CaseIterable, Hashable {
    case queued
    case running
    case succeeded
    case failed
    case timedOut = "timed_out"
    case canceled

    /// Queued or running: a job has at most one such run.
    public var isActive: Bool { self == .queued || self == .running }
    /// Final: no event moves a run out of these.
    public var isTerminal: Bool { !isActive }

    public static let activeStatuses: [RunStatus] = [.queued, .running]

    /// Parses a wire name, naming the field in the error.
    /// - Throws: ``ValidationError`` for an unknown status.
    public static func parse(_ name: String, field: String) throws -> RunStatus {
        guard let status = RunStatus(rawValue: name) else {
            throw ValidationError(
                field: field,
                message: "unknown status '\(name)'; expected one of \(allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        return status
    }
}

/// What started a run.
public enum RunTrigger: String, Sendable, Codable, CaseIterable, Hashable {
    /// "Run now" in the UI or CLI.
    case manual
    /// The job's cron schedule.
    case schedule
    /// A direct API call.
    case api
    /// "Run again" of an earlier run (``Run/rerunOf`` names it): the job's current definition.
    case rerun
}

/// One trigger of a job, with the definition it was dispatched with and what became of it.
public struct Run: Sendable, Hashable, Codable {
    public var id: String
    public var jobId: String
    /// The job's name when the run was triggered (the job may since have been renamed or deleted).
    public var jobName: String
    /// The job version whose definition this run carries.
    public var jobVersion: Int
    public var hostId: String
    public var agentType: AgentType
    /// The parameters of the job version the run was dispatched with.
    public var parameters: AgentParameters
    public var timeoutSeconds: Int
    public var queueTimeoutSeconds: Int
    public var status: RunStatus
    public var trigger: RunTrigger
    /// For scheduled runs, the occurrence this run is for.
    public var scheduledAt: Date?
    public var queuedAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var exitCode: Int?
    /// Why the run did not succeed, at most 4096 bytes (see ``ErrorSummary``).
    public var errorSummary: String?
    /// Set when someone asked to cancel; the run is `canceled` only once the host confirms the agent stopped.
    public var cancelRequestedAt: Date?
    /// Bumped each time the run is (re)dispatched; events carry it so stale ones can be told apart.
    public var dispatchEpoch: Int
    /// For a rerun (trigger ``RunTrigger/rerun``), the run it repeats.
    public var rerunOf: String?
    /// Who triggered the run; nil for runs recorded before requesters were.
    public var triggeredBy: RunRequester?
    /// Who asked to cancel the run; nil when nobody did (or before requesters were recorded).
    public var cancelRequestedBy: RunRequester?
    /// Its place in a retry chain: 1 for a first run, 2 for its first retry, and so on.
    public var attempt: Int
    /// For a retry, the attempt it retries (``attempt`` is one more than that run's).
    public var retryOf: String?
    /// The job's retry policy when the chain's first attempt was triggered; the whole chain keeps it.
    public var retryPolicy: RetryPolicy?
    /// A retry waiting out its delay: its dispatch is written at this time (its ``queuedAt``), and
    /// until then nothing of it has left the control plane. Nil for every other run.
    public var heldUntil: Date?

    public init(
        id: String, jobId: String, jobName: String, jobVersion: Int, hostId: String, agentType: AgentType,
        parameters: AgentParameters, timeoutSeconds: Int, queueTimeoutSeconds: Int, status: RunStatus = .queued,
        trigger: RunTrigger, scheduledAt: Date? = nil, queuedAt: Date, startedAt: Date? = nil, finishedAt: Date? = nil,
        exitCode: Int? = nil, errorSummary: String? = nil, cancelRequestedAt: Date? = nil, dispatchEpoch: Int = 1,
        rerunOf: String? = nil, triggeredBy: RunRequester? = nil, cancelRequestedBy: RunRequester? = nil,
        attempt: Int = 1, retryOf: String? = nil, retryPolicy: RetryPolicy? = nil, heldUntil: Date? = nil
    ) {
        self.id = id
        self.jobId = jobId
        self.jobName = jobName
        self.jobVersion = jobVersion
        self.hostId = hostId
        self.agentType = agentType
        self.parameters = parameters
        self.timeoutSeconds = timeoutSeconds
        self.queueTimeoutSeconds = queueTimeoutSeconds
        self.status = status
        self.trigger = trigger
        self.scheduledAt = scheduledAt
        self.queuedAt = queuedAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.exitCode = exitCode
        self.errorSummary = errorSummary
        self.cancelRequestedAt = cancelRequestedAt
        self.dispatchEpoch = dispatchEpoch
        self.rerunOf = rerunOf
        self.triggeredBy = triggeredBy
        self.cancelRequestedBy = cancelRequestedBy
        self.attempt = attempt
        self.retryOf = retryOf
        self.retryPolicy = retryPolicy
        self.heldUntil = heldUntil
    }

    /// A new queued run of a job, carrying a snapshot of its current definition.
    public static func queued(
        id: String? = nil, of job: Job, trigger: RunTrigger, scheduledAt: Date? = nil, rerunOf: String? = nil,
        triggeredBy: RunRequester? = nil, at now: Date
    ) -> Run {
        queued(
            id: id, of: job.snapshot, trigger: trigger, scheduledAt: scheduledAt, rerunOf: rerunOf,
            triggeredBy: triggeredBy, at: now)
    }

    /// A new queued run of the job `snapshot` was taken from: every trigger (manual, API, schedule)
    /// builds its run here.
    public static func queued(
        id: String? = nil, of snapshot: JobSnapshot, trigger: RunTrigger, scheduledAt: Date? = nil,
        rerunOf: String? = nil, triggeredBy: RunRequester? = nil, at now: Date
    ) -> Run {
        Run(
            id: id ?? Identifier.makeTimeOrdered("run", at: now), jobId: snapshot.jobId, jobName: snapshot.jobName,
            jobVersion: snapshot.jobVersion, hostId: snapshot.hostId, agentType: snapshot.agentType,
            parameters: snapshot.parameters, timeoutSeconds: snapshot.timeoutSeconds,
            queueTimeoutSeconds: snapshot.queueTimeoutSeconds,
            trigger: trigger, scheduledAt: scheduledAt, queuedAt: now, rerunOf: rerunOf, triggeredBy: triggeredBy,
            retryPolicy: snapshot.retryPolicy)
    }

    /// Time from start to finish, when both are known.
    public var durationMs: Int? {
        guard let startedAt, let finishedAt else { return nil }
        return max(0, Int((finishedAt.timeIntervalSince(startedAt) * 1000).rounded()))
    }

    /// The instant after which a run that has not started is given up.
    public var queueDeadline: Date { queuedAt.addingTimeInterval(TimeInterval(queueTimeoutSeconds)) }
}

extension Run {
    /// Writes the run as its `Codable` form: keys sorted, absent optionals left out.
    public func writeJSON(into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("agentType")
        writer.string(agentType.rawValue)
        writer.key("attempt")
        writer.int(attempt)
        if let cancelRequestedAt {
            writer.key("cancelRequestedAt")
            writer.date(cancelRequestedAt)
        }
        if let cancelRequestedBy {
            writer.key("cancelRequestedBy")
            cancelRequestedBy.writeJSON(into: &writer)
        }
        writer.key("dispatchEpoch")
        writer.int(dispatchEpoch)
        if let errorSummary {
            writer.key("errorSummary")
            writer.string(errorSummary)
        }
        if let exitCode {
            writer.key("exitCode")
            writer.int(exitCode)
        }
        if let finishedAt {
            writer.key("finishedAt")
            writer.date(finishedAt)
        }
        if let heldUntil {
            writer.key("heldUntil")
            writer.date(heldUntil)
        }
        writer.key("hostId")
        writer.string(hostId)
        writer.key("id")
        writer.string(id)
        writer.key("jobId")
        writer.string(jobId)
        writer.key("jobName")
        writer.string(jobName)
        writer.key("jobVersion")
        writer.int(jobVersion)
        writer.key("parameters")
        parameters.write(to: &writer)
        writer.key("queueTimeoutSeconds")
        writer.int(queueTimeoutSeconds)
        writer.key("queuedAt")
        writer.date(queuedAt)
        if let rerunOf {
            writer.key("rerunOf")
            writer.string(rerunOf)
        }
        if let retryOf {
            writer.key("retryOf")
            writer.string(retryOf)
        }
        if let retryPolicy {
            writer.key("retryPolicy")
            retryPolicy.writeJSON(into: &writer)
        }
        if let scheduledAt {
            writer.key("scheduledAt")
            writer.date(scheduledAt)
        }
        if let startedAt {
            writer.key("startedAt")
            writer.date(startedAt)
        }
        writer.key("status")
        writer.string(status.rawValue)
        writer.key("timeoutSeconds")
        writer.int(timeoutSeconds)
        writer.key("trigger")
        writer.string(trigger.rawValue)
        if let triggeredBy {
            writer.key("triggeredBy")
            triggeredBy.writeJSON(into: &writer)
        }
        writer.endObject()
    }
}

/// What a run copies from its job when it is triggered: later edits of the job change only later runs.
public struct JobSnapshot: Sendable, Hashable {
    public var jobId: String
    public var jobName: String
    public var jobVersion: Int
    public var hostId: String
    public var agentType: AgentType
    public var parameters: AgentParameters
    public var timeoutSeconds: Int
    public var queueTimeoutSeconds: Int
    public var retryPolicy: RetryPolicy?

    public init(
        jobId: String, jobName: String, jobVersion: Int, hostId: String, agentType: AgentType,
        parameters: AgentParameters, timeoutSeconds: Int, queueTimeoutSeconds: Int, retryPolicy: RetryPolicy? = nil
    ) {
        self.jobId = jobId
        self.jobName = jobName
        self.jobVersion = jobVersion
        self.hostId = hostId
        self.agentType = agentType
        self.parameters = parameters
        self.timeoutSeconds = timeoutSeconds
        self.queueTimeoutSeconds = queueTimeoutSeconds
        self.retryPolicy = retryPolicy
    }
}

extension Job {
    /// What a run of this job, triggered now, copies.
    public var snapshot: JobSnapshot {
        JobSnapshot(
            jobId: id, jobName: name, jobVersion: version, hostId: hostId, agentType: agentType,
            parameters: parameters, timeoutSeconds: timeoutSeconds, queueTimeoutSeconds: queueTimeoutSeconds,
            retryPolicy: retry)
    }
}
