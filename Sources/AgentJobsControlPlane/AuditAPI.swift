import AgentJobsCore
import AgentJobsStore
import Hummingbird

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension ControlPlaneAPI {
    var auditRoutes: [APIRoute] {
        [
            APIRoute(.get, "/api/v1/audit", .scope(.admin)) { request, _ in
                let query = try QueryReader(
                    request, allowed: ["kind", "action", "actorId", "targetId", "cursor", "limit"])
                let kind = try query.string("kind")
                if let kind, !AuditEntry.Action.targetKinds.contains(kind) {
                    throw ValidationError(
                        field: "kind",
                        message: "must be one of " + AuditEntry.Action.targetKinds.joined(separator: ", "))
                }
                let action = try query.string("action").map { name in
                    guard let action = AuditEntry.Action(rawValue: name) else {
                        throw ValidationError(
                            field: "action",
                            message: "must be one of "
                                + AuditEntry.Action.allCases.map(\.rawValue).joined(separator: ", "))
                    }
                    return action
                }
                let filter = AuditFilter(
                    targetKind: kind, action: action, actorId: try query.string("actorId"),
                    targetId: try query.string("targetId"))
                let limit = try Self.limit(query.value("limit"), default: Self.defaultPageSize, max: Self.maxPageSize)
                let page = try await store.listAudit(filter, cursor: try query.string("cursor"), limit: limit)
                return try JSONResponse.make(
                    AuditPageResponse(entries: page.entries.map(AuditEntryResource.init), nextCursor: page.nextCursor))
            }
        ]
    }
}

/// One audit entry as the API shows it.
struct AuditEntryResource: Encodable {
    struct Target: Encodable {
        var kind: String
        var id: String
        var name: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(kind, forKey: .kind)
            try container.encode(id, forKey: .id)
            try container.encode(name, forKey: .name)
        }

        enum CodingKeys: String, CodingKey { case kind, id, name }
    }

    var sequence: Int64
    var at: Date
    var action: String
    var actor: RunRequester?
    var target: Target
    var summary: String?

    init(_ entry: AuditEntry) {
        sequence = entry.sequence
        at = entry.at
        action = entry.action.rawValue
        actor = entry.actor
        target = Target(kind: entry.action.targetKind, id: entry.targetId, name: entry.targetName)
        summary = entry.summary
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sequence, forKey: .sequence)
        try container.encode(at, forKey: .at)
        try container.encode(action, forKey: .action)
        try container.encode(actor, forKey: .actor)
        try container.encode(target, forKey: .target)
        try container.encode(summary, forKey: .summary)
    }

    enum CodingKeys: String, CodingKey { case sequence, at, action, actor, target, summary }
}

struct AuditPageResponse: Encodable {
    var entries: [AuditEntryResource]
    var nextCursor: String?

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(entries, forKey: .entries)
        try container.encode(nextCursor, forKey: .nextCursor)
    }

    enum CodingKeys: String, CodingKey { case entries, nextCursor }
}
