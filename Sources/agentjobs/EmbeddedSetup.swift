import AgentJobsCore
import AgentJobsOrchestrator
import AgentJobsStore
import Foundation

/// Set-up of the embedded data dir: the first admin token and the local host.
enum EmbeddedSetup {
    static let localHostName = "local"

    static func createAdminToken(store: any Store, tokenFile: URL) async throws {
        let (_, secret) = try await store.createAPIToken(name: "dev admin", scope: .admin, now: Date())
        do {
            try PrivateFiles.write(Array((secret.value + "\n").utf8), to: tokenFile.path)
        } catch {
            throw CLIError("cannot write the admin token: \(error)")
        }
    }

    /// The local host's identity: registered on first start (all batch agent types), kept in
    /// `DATA_DIR/host/host.json` like a real host's. A data dir whose local host has no identity
    /// file yet gets a new credential for it.
    static func localHost(store: SQLiteStore, directory: URL, signingKey: DispatchSigningKey) async throws
        -> HostIdentity
    {
        if var identity = try? HostIdentity.load(from: directory), try await store.host(id: identity.hostId) != nil {
            if identity.signingPublicKey != signingKey.verifier.base64 {
                identity.signingPublicKey = signingKey.verifier.base64
                try identity.save(to: directory)
            }
            return identity
        }
        let now = Date()
        let credential = Secret.generate(prefix: "ajh")
        let agents = AgentType.allCases.filter { $0.kind == .batch }
        let host: AgentJobsCore.Host
        if let existing = try await store.listHosts().first(where: { $0.name == localHostName }) {
            try await store.replaceHostCredential(hostId: existing.id, credential: credential)
            host = existing
        } else {
            let (_, registration) = try await store.createRegistrationToken(
                expiresAt: now.addingTimeInterval(60), now: now)
            host = try await store.registerHost(
                registrationTokenHash: registration.hash, name: localHostName, managedAgents: agents,
                credential: credential,
                now: now)
        }
        let identity = HostIdentity(
            controlPlaneURL: "embedded", hostId: host.id, name: host.name, credential: credential.value,
            signingPublicKey: signingKey.verifier.base64, managedAgents: host.managedAgents)
        do {
            try identity.save(to: directory)
        } catch let error as OrchestratorError {
            throw CLIError(error.message)
        }
        return identity
    }
}
