/// The kinds of agent an orchestrator can manage.
///
/// Batch agents run to completion and can be the subject of a job; persistent agents run
/// continuously on their host and are managed outside of jobs.
public enum AgentType: String, Sendable, Codable, CaseIterable, Hashable {
    case lineagePlus = "lineage-plus"
    case externalMonitors = "external-monitors"
    case datahealth = "datahealth"
    case dataSource = "data-source"
    case sds = "sds"
    case crossSource = "cross-source"

    /// Whether an agent runs to completion (and can be scheduled as a job) or runs continuously.
    public enum Kind: String, Sendable, Codable {
        case batch
        case persistent
    }

    /// The agent's kind.
    public var kind: Kind {
        switch self {
        case .lineagePlus, .externalMonitors, .datahealth: return .batch
        case .dataSource, .sds, .crossSource: return .persistent
        }
    }

    /// A short human-readable name, as the UI shows it.
    public var displayName: String {
        switch self {
        case .lineagePlus: return "Lineage+"
        case .externalMonitors: return "External Monitors"
        case .datahealth: return "DataHealth"
        case .dataSource: return "Data Source"
        case .sds: return "SDS"
        case .crossSource: return "Cross-Source"
        }
    }

    /// The list of wire names, for error messages.
    public static var wireNames: String {
        allCases.map(\.rawValue).joined(separator: ", ")
    }

    /// Parses a wire name.
    /// - Parameters:
    ///   - wireName: The agent type's wire name, e.g. `lineage-plus`.
    ///   - field: The field the value came from, named in the error.
    /// - Throws: ``ValidationError`` when the name is not a known agent type.
    public static func parse(_ wireName: String, field: String) throws -> AgentType {
        guard let type = AgentType(rawValue: wireName) else {
            throw ValidationError(
                field: field, message: "unknown agent type '\(wireName)'; expected one of \(wireNames)")
        }
        return type
    }
}
