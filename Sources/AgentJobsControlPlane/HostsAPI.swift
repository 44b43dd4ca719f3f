import AgentJobsCore
import AgentJobsStore
import Hummingbird

extension ControlPlaneAPI {
    var hostRoutes: [APIRoute] {
        [
            APIRoute(.post, "/api/v1/hosts/register", .registrationToken) { request, _ in
                guard let token = Authenticator.bearer(request) else {
                    throw APIError(
                        .unauthorized, code: "unauthenticated",
                        message: "send the registration token as 'Authorization: Bearer <token>'")
                }
                var reader = try JSONObjectReader(try await JSONResponse.requiredBody(of: request))
                let name = try reader.requiredName("name")
                let agents = try Host.validateManagedAgents(try reader.stringArray("managedAgents"))
                try reader.rejectUnknownFields()
                let credential = Secret.generate(prefix: "ajh")
                let host = try await store.registerHost(
                    registrationTokenHash: Secret.hash(token), name: name, managedAgents: agents,
                    credential: credential,
                    now: now)
                return try JSONResponse.make(
                    status: .created,
                    RegisteredHostResponse(
                        host: try await hostResource(host), credential: credential.value,
                        signingPublicKey: configuration.dispatchVerifier?.base64))
            },
            APIRoute(.put, "/api/v1/hosts/:id/agents", .host) { request, context in
                var reader = try JSONObjectReader(try await JSONResponse.requiredBody(of: request))
                let agents = try Host.validateManagedAgents(try reader.stringArray("managedAgents"))
                try reader.rejectUnknownFields()
                let host = try await store.updateManagedAgents(
                    hostId: try context.parameters.require("id"), managedAgents: agents, now: now)
                authenticator.invalidate()
                return try JSONResponse.make(try await hostResource(host))
            },
            APIRoute(.post, "/api/v1/hosts/:id/revoke", .scope(.admin)) { _, context in
                let host = try await store.revokeHost(
                    id: try context.parameters.require("id"), by: context.principal?.requester, now: now)
                authenticator.invalidate()
                return try JSONResponse.make(try await hostResource(host))
            },
            APIRoute(.post, "/api/v1/hosts/:id/credential", .scope(.admin)) { _, context in
                let id = try context.parameters.require("id")
                let credential = Secret.generate(prefix: "ajh")
                try await store.replaceHostCredential(
                    hostId: id, credential: credential, by: context.principal?.requester, now: now)
                authenticator.invalidate()
                guard let host = try await store.host(id: id) else { throw APIError.notFound("no host with id \(id)") }
                return try JSONResponse.make(
                    RegisteredHostResponse(
                        host: try await hostResource(host), credential: credential.value,
                        signingPublicKey: configuration.dispatchVerifier?.base64))
            },
            APIRoute(.get, "/api/v1/hosts", .scope(.read)) { request, _ in
                let query = try QueryReader(
                    request, allowed: ["name", "namePrefix", "agentType", "status", "cursor", "limit"])
                let filter = HostFilter(
                    name: try query.string("name"), namePrefix: try query.string("namePrefix"),
                    agentType: try query.string("agentType").map { try AgentType.parse($0, field: "agentType") })
                let status = try query.string("status").map { name in
                    guard let status = HostStatus(rawValue: name) else {
                        throw ValidationError(field: "status", message: "must be one of online, offline, unknown")
                    }
                    return status
                }
                let limit = try query.value("limit").map {
                    try Self.limit($0, default: Self.defaultPageSize, max: Self.maxPageSize)
                }
                return try JSONResponse.make(
                    try await hostPage(filter, status: status, cursor: try query.string("cursor"), limit: limit))
            },
            APIRoute(.get, "/api/v1/hosts/:id", .scope(.read)) { _, context in
                let id = try context.parameters.require("id")
                guard let host = try await store.host(id: id) else { throw APIError.notFound("no host with id \(id)") }
                return try JSONResponse.make(try await hostResource(host))
            },
        ]
    }

    /// One page of hosts as the API shows them. The status is judged here, on host tracking's
    /// evidence, so a status filter reads the store's pages until `limit` hosts have it (the page
    /// ends at the last host shown, so the next one starts right after it), and has no total. It
    /// looks at 5,000 hosts per request at most: a page may then hold fewer, with a cursor after
    /// the last host looked at.
    func hostPage(_ filter: HostFilter, status: HostStatus?, cursor: String?, limit: Int?) async throws
        -> HostPageResponse
    {
        guard let status else {
            let page = try await store.listHosts(filter, cursor: cursor, limit: limit)
            return HostPageResponse(
                hosts: try await hostResources(page.hosts), nextCursor: page.nextCursor, total: page.total)
        }
        var shown: [HostResource] = []
        var after = cursor
        var looked = 0
        while true {
            let page = try await store.listHosts(filter, cursor: after, limit: Self.maxPageSize)
            for resource in try await hostResources(page.hosts) where resource.status == status {
                if let limit, shown.count == limit {
                    let last = shown[shown.count - 1]
                    return HostPageResponse(
                        hosts: shown, nextCursor: PageCursor.encode(name: last.name, id: last.id), total: nil)
                }
                shown.append(resource)
            }
            guard let next = page.nextCursor else { return HostPageResponse(hosts: shown, nextCursor: nil, total: nil) }
            looked += page.hosts.count
            if limit != nil, looked >= Self.maxHostsLookedAt {
                return HostPageResponse(hosts: shown, nextCursor: next, total: nil)
            }
            after = next
        }
    }

    /// Hosts a status-filtered page looks at, at most.
    static let maxHostsLookedAt = 5000

    func hostResource(_ host: Host) async throws -> HostResource {
        try await hostResources([host])[0]
    }

    /// Hosts as the API shows them, their status judged on host tracking's evidence.
    func hostResources(_ hosts: [Host]) async throws -> [HostResource] {
        let liveness = try await self.liveness(of: hosts)
        return zip(hosts, liveness).map { HostResource($0, liveness: $1) }
    }

    /// The liveness of each host, judged on how far host tracking has read its heartbeat partition.
    func liveness(of hosts: [Host]) async throws -> [HostLiveness] {
        let watermarks = try await store.hostTrackingWatermarks()
        let now = self.now
        // A host never heard from has no partition yet; it shows offline either way (only host
        // tracking, which knows the partition count, needs to tell "never heard" from "lost").
        return hosts.map { host in
            host.liveness(
                now: now, grace: configuration.hostOfflineGrace,
                watermark: host.heartbeatPartition.flatMap { watermarks[$0] })
        }
    }
}

struct HostPageResponse: Encodable {
    var hosts: [HostResource]
    var nextCursor: String?
    /// Hosts matching the filters on every page; nil with a status filter (judged per page).
    var total: Int?

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(hosts, forKey: .hosts)
        try container.encode(nextCursor, forKey: .nextCursor)
        try container.encode(total, forKey: .total)
    }

    enum CodingKeys: String, CodingKey { case hosts, nextCursor, total }
}

struct RegisteredHostResponse: Encodable {
    var host: HostResource
    var credential: String
    /// The control plane's Ed25519 dispatch-signing public key (base64); the orchestrator refuses
    /// dispatch commands that do not verify with it.
    var signingPublicKey: String?
}
