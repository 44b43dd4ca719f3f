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
    /// The last heartbeat, or nil when the host was never heard from.
    public var lastSeenAt: Date?
    /// The orchestrator version the host last reported.
    public var version: String?

    public init(id: String, name: String, managedAgents: [AgentType], registeredAt: Date, lastSeenAt: Date? = nil, version: String? = nil) {
        self.id = id
        self.name = name
        self.managedAgents = managedAgents
        self.registeredAt = registeredAt
        self.lastSeenAt = lastSeenAt
        self.version = version
    }

    /// Whether the host has been heard from within `grace` of `now`.
    public func status(now: Date, grace: Duration) -> HostStatus {
        guard let lastSeenAt else { return .offline }
        return now.timeIntervalSince(lastSeenAt) <= grace.seconds ? .online : .offline
    }

    /// Validates a host's managed agents list (duplicates removed, order kept).
    /// - Throws: ``ValidationError`` for an unknown agent type or an empty list.
    public static func validateManagedAgents(_ names: [String]?, field: String = "managedAgents") throws -> [AgentType] {
        guard let names else { throw ValidationError(field: field, message: "is required: the agent types this host manages") }
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
}

extension Duration {
    /// The duration in (fractional) seconds.
    public var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
