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
                        host: hostResource(host), credential: credential.value,
                        signingPublicKey: configuration.dispatchVerifier?.base64))
            },
            APIRoute(.put, "/api/v1/hosts/:id/agents", .host) { request, context in
                var reader = try JSONObjectReader(try await JSONResponse.requiredBody(of: request))
                let agents = try Host.validateManagedAgents(try reader.stringArray("managedAgents"))
                try reader.rejectUnknownFields()
                let host = try await store.updateManagedAgents(
                    hostId: try context.parameters.require("id"), managedAgents: agents)
                authenticator.invalidate()
                return try JSONResponse.make(hostResource(host))
            },
            APIRoute(.get, "/api/v1/hosts", .scope(.read)) { request, _ in
                _ = try QueryReader(request, allowed: [])
                return try JSONResponse.make(["hosts": try await store.listHosts().map(hostResource)])
            },
            APIRoute(.get, "/api/v1/hosts/:id", .scope(.read)) { _, context in
                let id = try context.parameters.require("id")
                guard let host = try await store.host(id: id) else { throw APIError.notFound("no host with id \(id)") }
                return try JSONResponse.make(hostResource(host))
            },
        ]
    }

    func hostResource(_ host: Host) -> HostResource {
        HostResource(host, now: now, grace: configuration.hostOfflineGrace)
    }
}

struct RegisteredHostResponse: Encodable {
    var host: HostResource
    var credential: String
    /// The control plane's Ed25519 dispatch-signing public key (base64); the orchestrator refuses
    /// dispatch commands that do not verify with it.
    var signingPublicKey: String?
}
