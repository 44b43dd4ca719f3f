#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A saved definition of work: which batch agent to run on which host, with what parameters, and when.
public struct Job: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var hostId: String
    public var agentType: AgentType
    public var parameters: AgentParameters
    public var schedule: JobSchedule?
    /// How long a started run may take before the orchestrator stops it (`timed_out`).
    public var timeoutSeconds: Int
    /// How long a run may wait to be started before it is given up (`timed_out`, never launched).
    public var queueTimeoutSeconds: Int
    /// Whether and how a failed or timed-out run is retried; nil for never.
    public var retry: RetryPolicy?
    /// Starts at 1 and grows with every edit; runs record the version they were dispatched with.
    public var version: Int
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, name: String, hostId: String, agentType: AgentType, parameters: AgentParameters,
        schedule: JobSchedule?, timeoutSeconds: Int, queueTimeoutSeconds: Int, retry: RetryPolicy? = nil,
        version: Int, createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.name = name
        self.hostId = hostId
        self.agentType = agentType
        self.parameters = parameters
        self.schedule = schedule
        self.timeoutSeconds = timeoutSeconds
        self.queueTimeoutSeconds = queueTimeoutSeconds
        self.retry = retry
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Limits and defaults of the job definition.
    public enum Limits {
        public static let defaultTimeoutSeconds = 3600
        public static let defaultQueueTimeoutSeconds = 600
        public static let timeoutRange = 1...(7 * 24 * 3600)
        public static let queueTimeoutRange = 1...(7 * 24 * 3600)
    }
}

/// When a job runs by itself: a cron expression evaluated in an IANA time zone, and what to do
/// about occurrences the scheduler could not fire on time.
public struct JobSchedule: Sendable, Hashable, Codable {
    public var cron: String
    public var timezone: String
    /// A paused schedule fires nothing; on resume, the occurrences it passed are handled by `missedPolicy`.
    public var paused: Bool
    public var missedPolicy: MissedPolicy
    /// With ``MissedPolicy/latest``, how late a missed occurrence may still be caught up.
    public var catchUpWindowSeconds: Int
    /// Each occurrence fires up to this many seconds late (a fixed offset per job), to spread the
    /// start of many jobs with the same cron.
    public var jitterSeconds: Int

    public init(
        cron: String, timezone: String = "UTC", paused: Bool = false, missedPolicy: MissedPolicy = .latest,
        catchUpWindowSeconds: Int = JobSchedule.defaultCatchUpWindowSeconds, jitterSeconds: Int = 0
    ) {
        self.cron = cron
        self.timezone = timezone
        self.paused = paused
        self.missedPolicy = missedPolicy
        self.catchUpWindowSeconds = catchUpWindowSeconds
        self.jitterSeconds = jitterSeconds
    }

    public static let defaultCatchUpWindowSeconds = 3600
    public static let catchUpWindowRange = 0...(7 * 24 * 3600)
    public static let jitterRange = 0...3600

    /// Whether the fire times would change (as opposed to pausing or policy changes).
    public func sameTimes(as other: JobSchedule) -> Bool { cron == other.cron && timezone == other.timezone }
}

/// What the scheduler does with occurrences it could not fire on time (control plane down, schedule paused).
public enum MissedPolicy: String, Sendable, Codable, CaseIterable, Hashable {
    /// Record them as missed; start nothing.
    case skip
    /// Start one catch-up run for the most recent one if it is within the catch-up window; record the rest as missed.
    case latest
}

/// The fields of a job that a create or edit request sets, validated in isolation; checks that need
/// the store (the host exists and manages the agent type) happen where the host is known.
public struct JobDefinition: Sendable, Hashable {
    public var name: String
    public var hostId: String
    public var agentType: AgentType
    public var parameters: AgentParameters
    public var schedule: JobSchedule?
    public var timeoutSeconds: Int
    public var queueTimeoutSeconds: Int
    public var retry: RetryPolicy?

    public init(
        name: String, hostId: String, agentType: AgentType, parameters: AgentParameters, schedule: JobSchedule? = nil,
        timeoutSeconds: Int = Job.Limits.defaultTimeoutSeconds,
        queueTimeoutSeconds: Int = Job.Limits.defaultQueueTimeoutSeconds, retry: RetryPolicy? = nil
    ) {
        self.name = name
        self.hostId = hostId
        self.agentType = agentType
        self.parameters = parameters
        self.schedule = schedule
        self.timeoutSeconds = timeoutSeconds
        self.queueTimeoutSeconds = queueTimeoutSeconds
        self.retry = retry
    }

    /// The definition of an existing job.
    public init(_ job: Job) {
        self.init(
            name: job.name, hostId: job.hostId, agentType: job.agentType, parameters: job.parameters,
            schedule: job.schedule, timeoutSeconds: job.timeoutSeconds, queueTimeoutSeconds: job.queueTimeoutSeconds,
            retry: job.retry)
    }

    /// Parses a create request (`POST /api/v1/jobs`).
    /// - Throws: ``ValidationError`` naming the first bad field.
    public static func parseCreate(_ body: JSONValue) throws -> JobDefinition {
        var reader = try JSONObjectReader(body)
        let name = try reader.requiredName("name")
        let hostId = try reader.requiredName("hostId")
        let agentType = try AgentType.parse(try reader.requiredString("agentType"), field: "agentType")
        let parameters = try AgentParameters.validate(reader.value("parameters"), for: agentType)
        let schedule = try JobSchedule.parse(reader.value("schedule"))
        let timeout =
            try reader.int("timeoutSeconds", range: Job.Limits.timeoutRange) ?? Job.Limits.defaultTimeoutSeconds
        let queueTimeout =
            try reader.int("queueTimeoutSeconds", range: Job.Limits.queueTimeoutRange)
            ?? Job.Limits.defaultQueueTimeoutSeconds
        let retry = try RetryPolicy.parse(reader.value("retry"))
        try reader.rejectUnknownFields()
        return JobDefinition(
            name: name, hostId: hostId, agentType: agentType, parameters: parameters, schedule: schedule,
            timeoutSeconds: timeout, queueTimeoutSeconds: queueTimeout, retry: retry)
    }

    /// Applies an edit request (`PATCH /api/v1/jobs/{id}`): fields present replace the current ones,
    /// `"schedule": null` removes the schedule. Changing the agent type requires new parameters.
    /// - Throws: ``ValidationError`` naming the first bad field.
    public func applyingPatch(_ body: JSONValue) throws -> JobDefinition {
        var reader = try JSONObjectReader(body)
        var result = self
        if reader.has("name") { result.name = try reader.requiredName("name") }
        if reader.has("hostId") { result.hostId = try reader.requiredName("hostId") }
        if reader.has("agentType") {
            result.agentType = try AgentType.parse(try reader.requiredString("agentType"), field: "agentType")
        }
        if reader.has("parameters") {
            result.parameters = try AgentParameters.validate(reader.value("parameters"), for: result.agentType)
        } else if result.agentType != agentType {
            guard result.agentType.kind == .batch else {
                _ = try AgentParameters.validate(nil, for: result.agentType)
                return result
            }
            if !result.parameters.fits(result.agentType) {
                throw ValidationError(
                    field: "parameters", message: "is required when agentType changes to '\(result.agentType.rawValue)'"
                )
            }
        }
        if reader.has("schedule") {
            // A schedule object in a patch changes only the fields it names; null removes the schedule.
            result.schedule = try JobSchedule.parse(reader.value("schedule"), merging: schedule)
        }
        if reader.has("timeoutSeconds") {
            guard let value = try reader.int("timeoutSeconds", range: Job.Limits.timeoutRange) else {
                throw ValidationError(field: "timeoutSeconds", message: "must be a whole number")
            }
            result.timeoutSeconds = value
        }
        if reader.has("queueTimeoutSeconds") {
            guard let value = try reader.int("queueTimeoutSeconds", range: Job.Limits.queueTimeoutRange) else {
                throw ValidationError(field: "queueTimeoutSeconds", message: "must be a whole number")
            }
            result.queueTimeoutSeconds = value
        }
        if reader.has("retry") {
            // As for the schedule: an object changes the fields it names; null turns retries off.
            result.retry = try RetryPolicy.parse(reader.value("retry"), merging: retry)
        }
        try reader.rejectUnknownFields()
        return result
    }

    /// Checks the definition against its target host.
    /// - Throws: ``ValidationError`` when the host does not manage the agent type.
    public func check(against host: Host) throws {
        guard host.managedAgents.contains(agentType) else {
            let managed =
                host.managedAgents.isEmpty ? "none" : host.managedAgents.map(\.rawValue).joined(separator: ", ")
            throw ValidationError(
                field: "agentType",
                message:
                    "host '\(host.name)' does not manage '\(agentType.rawValue)' (it manages: \(managed)); pick another host or add the agent type to the host"
            )
        }
    }
}

extension JobSchedule {
    /// Parses and validates a `schedule` object (`{cron, timezone}`), or nil for an absent/null schedule.
    /// - Throws: ``ValidationError`` for a bad cron expression or an unknown time zone.
    public static func parse(_ json: JSONValue?, merging current: JobSchedule? = nil) throws -> JobSchedule? {
        guard let json else { return nil }
        var reader = try JSONObjectReader(json, path: "schedule")
        var schedule = current ?? JobSchedule(cron: "")
        if let cron = try reader.string("cron") {
            schedule.cron = cron.trimmingWhitespace()
        } else if current == nil {
            throw ValidationError(field: "schedule.cron", message: "is required, e.g. \"30 2 * * *\" or \"@daily\"")
        }
        if let timezone = try reader.string("timezone")?.trimmingWhitespace() {
            schedule.timezone = timezone.isEmpty ? "UTC" : timezone
        }
        if let paused = try reader.bool("paused") { schedule.paused = paused }
        if let policy = try reader.string("missedPolicy") {
            guard let parsed = MissedPolicy(rawValue: policy) else {
                throw ValidationError(field: "schedule.missedPolicy", message: "must be 'skip' or 'latest'")
            }
            schedule.missedPolicy = parsed
        }
        if let window = try reader.int("catchUpWindowSeconds", range: catchUpWindowRange) {
            schedule.catchUpWindowSeconds = window
        }
        if let jitter = try reader.int("jitterSeconds", range: jitterRange) { schedule.jitterSeconds = jitter }
        try reader.rejectUnknownFields()
        try schedule.validate()
        return schedule
    }
}
