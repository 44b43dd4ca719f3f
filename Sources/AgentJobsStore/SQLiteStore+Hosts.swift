import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Hosts

extension SQLiteStore {
    public func registerHost(
        registrationTokenHash: String, name: String, managedAgents: [AgentType], credential: Secret, now: Date
    ) async throws -> Host {
        let host = Host(id: Identifier.make("host"), name: name, managedAgents: managedAgents, registeredAt: now)
        return try await write { db in
            try db.query(
                """
                UPDATE registration_tokens SET used_at = ?, used_by_host_id = ?
                WHERE secret_hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
                """,
                [.date(now), .text(host.id), .text(registrationTokenHash), .date(now)])
            guard db.changes == 1 else {
                throw StoreError(
                    .invalidRegistrationToken,
                    "the registration token is unknown, already used, expired or revoked; ask an admin for a new one (POST /api/v1/registration-tokens)"
                )
            }
            try db.query(
                "INSERT INTO hosts (id, name, managed_agents, credential_hash, registered_at) VALUES (?, ?, ?, ?, ?)",
                [.text(host.id), .text(name), .text(Codec.agents(managedAgents)), .text(credential.hash), .date(now)])
            let usedToken = try db.query(
                "SELECT id FROM registration_tokens WHERE secret_hash = ?", [.text(registrationTokenHash)]
            ).first?.string("id")
            try Self.appendAudit(.hostRegistered(host, registrationTokenId: usedToken, at: now), db)
            return host
        }
    }

    public func host(id: String) async throws -> Host? {
        try await read { db in try db.query("SELECT * FROM hosts WHERE id = ?", [.text(id)]).first.map(Self.host) }
    }

    public func host(credentialHash: String) async throws -> Host? {
        try await read { db in
            try db.query("SELECT * FROM hosts WHERE credential_hash = ?", [.text(credentialHash)]).first.map(Self.host)
        }
    }

    public func listHosts() async throws -> [Host] {
        try await read { db in try db.query("SELECT * FROM hosts ORDER BY name, id").map(Self.host) }
    }

    public func updateManagedAgents(hostId: String, managedAgents: [AgentType], now: Date) async throws -> Host {
        try await write { db in
            try db.query(
                "UPDATE hosts SET managed_agents = ? WHERE id = ?", [.text(Codec.agents(managedAgents)), .text(hostId)])
            guard let row = try db.query("SELECT * FROM hosts WHERE id = ?", [.text(hostId)]).first else {
                throw StoreError(.notFound, "no host with id \(hostId)")
            }
            let host = try Self.host(row)
            try Self.appendAudit(.hostAgentsUpdated(host, at: now), db)
            return host
        }
    }
}
