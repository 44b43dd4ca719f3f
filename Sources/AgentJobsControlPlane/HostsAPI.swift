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
                _ = try QueryReader(request, allowed: [])
                return try JSONResponse.make(["hosts": try await hostResources(try await store.listHosts())])
            },
            APIRoute(.get, "/api/v1/hosts/:id", .scope(.read)) { _, context in
                let id = try context.parameters.require("id")
                guard let host = try await store.host(id: id) else { throw APIError.notFound("no host with id \(id)") }
                return try JSONResponse.make(try await hostResource(host))
            },
        ]
    }

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

struct RegisteredHostResponse: Encodable {
    var host: HostResource
    var credential: String
    /// The control plane's Ed25519 dispatch-signing public key (base64); the orchestrator refuses
    /// dispatch commands that do not verify with it.
    var signingPublicKey: String?
}
