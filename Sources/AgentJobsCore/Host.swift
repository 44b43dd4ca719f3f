#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A machine that runs an orchestrator, registered with the control plane.
public struct Host: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    /// The agent types the host's orchestrator manages; jobs may only target these.
    public var managedAgents: [AgentType]
    public var registeredAt: Date
    /// When its last heartbeat was received (the control plane's clock), or nil when never heard from.
    public var lastSeenAt: Date?
    /// The orchestrator version the host last reported.
    public var version: String?

    public init(
        id: String, name: String, managedAgents: [AgentType], registeredAt: Date, lastSeenAt: Date? = nil,
        version: String? = nil, heartbeatPartition: Int32? = nil, clockSkewSeconds: Double? = nil,
        revokedAt: Date? = nil, maxConcurrentRuns: Int? = nil, runningRuns: Int? = nil
    ) {
        self.id = id
        self.name = name
        self.managedAgents = managedAgents
        self.registeredAt = registeredAt
        self.lastSeenAt = lastSeenAt
        self.version = version
        self.heartbeatPartition = heartbeatPartition
        self.clockSkewSeconds = clockSkewSeconds
        self.revokedAt = revokedAt
        self.maxConcurrentRuns = maxConcurrentRuns
        self.runningRuns = runningRuns
    }

    /// The stored credential hash of a revoked host starts with this (no SHA-256 hex does).
    public static let revokedCredentialPrefix = "revoked:"

    /// The partition of `agentjobs.host-events` its heartbeats were last read from; `nil` if never.
    public var heartbeatPartition: Int32?
    /// The host's clock minus the control plane's, as of its last heartbeat (seconds; positive when
    /// the host's clock is ahead). Reported only: liveness goes by when heartbeats were received.
    public var clockSkewSeconds: Double?
    /// When an administrator revoked the host's credential; `nil` while it is valid.
    public var revokedAt: Date?
    /// The concurrency limit its last heartbeat reported; nil for none (or not reported).
    public var maxConcurrentRuns: Int?
    /// Runs it had launched and not yet ended, as of its last heartbeat; nil before the first.
    public var runningRuns: Int?

    /// Whether a run dispatched to it now would wait for a slot (as of its last heartbeat).
    public var isAtCapacity: Bool {
        guard let maxConcurrentRuns, let runningRuns else { return false }
        return runningRuns >= maxConcurrentRuns
    }

    /// The host's liveness, judged on the evidence of host tracking (see ``HostLiveness/judge``).
    /// - Parameters:
    ///   - watermark: Tracking of the host's heartbeat partition.
    public func liveness(now: Date, grace: Duration, watermark: HostTrackingWatermark?) -> HostLiveness {
        HostLiveness.judge(
            lastHeard: lastSeenAt, registeredAt: registeredAt, watermark: watermark, now: now, grace: grace)
    }

    /// Validates a host's managed agents list (duplicates removed, order kept).
    /// - Throws: ``ValidationError`` for an unknown agent type or an empty list.
    public static func validateManagedAgents(_ names: [String]?, field: String = "managedAgents") throws -> [AgentType]
    {
        guard let names else {
            throw ValidationError(field: field, message: "is required: the agent types this host manages")
        }
        var types: [AgentType] = []
        for (index, name) in names.enumerated() {
            let type = try AgentType.parse(name, field: "\(field)[\(index)]")
            if !types.contains(type) { types.append(type) }
        }
        return types
    }
}

/// Whether a host is currently heard from.
public enum HostStatus: String, Sendable, Codable {
    case online
    case offline
    /// Not heard from within the grace, and host tracking cannot tell yet whether it is lost (it is
    /// behind, or resumed less than a grace period ago).
    case unknown
}

extension Duration {
    /// The duration in (fractional) seconds.
    public var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    /// Whole milliseconds, rounded down.
    public var millisecondCount: Int64 {
        let parts = components
        return parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000
    }
}
