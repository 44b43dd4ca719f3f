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
    /// Starts at 1 and grows with every edit; runs record the version they were dispatched with.
    public var version: Int
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, name: String, hostId: String, agentType: AgentType, parameters: AgentParameters,
        schedule: JobSchedule?, timeoutSeconds: Int, queueTimeoutSeconds: Int, version: Int,
        createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.name = name
        self.hostId = hostId
        self.agentType = agentType
        self.parameters = parameters
        self.schedule = schedule
        self.timeoutSeconds = timeoutSeconds
        self.queueTimeoutSeconds = queueTimeoutSeconds
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

/// When a job runs by itself: a cron expression evaluated in an IANA time zone.
public struct JobSchedule: Sendable, Hashable, Codable {
    public var cron: String
    public var timezone: String

    public init(cron: String, timezone: String = "UTC") {
        self.cron = cron
        self.timezone = timezone
    }
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

    public init(
        name: String, hostId: String, agentType: AgentType, parameters: AgentParameters, schedule: JobSchedule? = nil,
        timeoutSeconds: Int = Job.Limits.defaultTimeoutSeconds,
        queueTimeoutSeconds: Int = Job.Limits.defaultQueueTimeoutSeconds
    ) {
        self.name = name
        self.hostId = hostId
        self.agentType = agentType
        self.parameters = parameters
        self.schedule = schedule
        self.timeoutSeconds = timeoutSeconds
        self.queueTimeoutSeconds = queueTimeoutSeconds
    }

    /// The definition of an existing job.
    public init(_ job: Job) {
        self.init(
            name: job.name, hostId: job.hostId, agentType: job.agentType, parameters: job.parameters,
            schedule: job.schedule, timeoutSeconds: job.timeoutSeconds, queueTimeoutSeconds: job.queueTimeoutSeconds)
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
        let timeout = try reader.int("timeoutSeconds", range: Job.Limits.timeoutRange) ?? Job.Limits.defaultTimeoutSeconds
        let queueTimeout =
            try reader.int("queueTimeoutSeconds", range: Job.Limits.queueTimeoutRange) ?? Job.Limits.defaultQueueTimeoutSeconds
        try reader.rejectUnknownFields()
        return JobDefinition(
            name: name, hostId: hostId, agentType: agentType, parameters: parameters, schedule: schedule,
            timeoutSeconds: timeout, queueTimeoutSeconds: queueTimeout)
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
                throw ValidationError(field: "parameters", message: "is required when agentType changes to '\(result.agentType.rawValue)'")
            }
        }
        if reader.has("schedule") { result.schedule = try JobSchedule.parse(reader.value("schedule")) }
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
        try reader.rejectUnknownFields()
        return result
    }

    /// Checks the definition against its target host.
    /// - Throws: ``ValidationError`` when the host does not manage the agent type.
    public func check(against host: Host) throws {
        guard host.managedAgents.contains(agentType) else {
            let managed = host.managedAgents.isEmpty ? "none" : host.managedAgents.map(\.rawValue).joined(separator: ", ")
            throw ValidationError(
                field: "agentType",
                message: "host '\(host.name)' does not manage '\(agentType.rawValue)' (it manages: \(managed)); pick another host or add the agent type to the host"
            )
        }
    }
}

extension JobSchedule {
    /// Parses and validates a `schedule` object (`{cron, timezone}`), or nil for an absent/null schedule.
    /// - Throws: ``ValidationError`` for a bad cron expression or an unknown time zone.
    public static func parse(_ json: JSONValue?) throws -> JobSchedule? {
        guard let json else { return nil }
        var reader = try JSONObjectReader(json, path: "schedule")
        let cron = try reader.requiredString("cron").trimmingWhitespace()
        let timezone = try reader.string("timezone")?.trimmingWhitespace() ?? "UTC"
        try reader.rejectUnknownFields()
        let schedule = JobSchedule(cron: cron, timezone: timezone.isEmpty ? "UTC" : timezone)
        try schedule.validate()
        return schedule
    }
}
