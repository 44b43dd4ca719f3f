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

    public func listHosts(_ filter: HostFilter, cursor: String?, limit: Int?) async throws -> HostPage {
        var conditions: [String] = []
        var bindings: [SQLiteValue] = []
        if let name = filter.name {
            conditions.append("name = ?")
            bindings.append(.text(name))
        }
        if let prefix = filter.namePrefix {
            conditions.append("substr(name, 1, length(?)) = ?")
            bindings += [.text(prefix), .text(prefix)]
        }
        if let agentType = filter.agentType {
            // managed_agents is a JSON array of agent type names, which need no escaping.
            conditions.append("instr(managed_agents, ?) > 0")
            bindings.append(.text("\"\(agentType.rawValue)\""))
        }
        let countSQL =
            "SELECT COUNT(*) AS total FROM hosts"
            + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
        let countBindings = bindings
        if let cursor {
            guard let (name, id) = PageCursor.decodeHost(cursor) else { throw PageCursor.malformed }
            conditions.append("(name, id) > (?, ?)")
            bindings += [.text(name), .text(id)]
        }
        var sql = "SELECT * FROM hosts" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
        sql += " ORDER BY name, id"
        if let limit {
            sql += " LIMIT ?"
            bindings.append(.int(max(0, limit) + 1))
        }
        return try await read { [sql, bindings] db in
            let total = try db.query(countSQL, countBindings).first?.int("total") ?? 0
            let hosts = try db.query(sql, bindings).map(Self.host)
            guard let limit, hosts.count > limit else { return HostPage(hosts: hosts, nextCursor: nil, total: total) }
            let page = Array(hosts.prefix(max(0, limit)))
            return HostPage(
                hosts: page, nextCursor: page.last.map { PageCursor.encode(name: $0.name, id: $0.id) }, total: total)
        }
    }

    public func updateManagedAgents(hostId: String, managedAgents: [AgentType], now: Date) async throws -> Host {
        try await write { db in
            guard let row = try db.query("SELECT * FROM hosts WHERE id = ?", [.text(hostId)]).first else {
                throw StoreError(.notFound, "no host with id \(hostId)")
            }
            var host = try Self.host(row)
            // A re-sync that changes nothing (every start of an orchestrator) is not a change.
            guard host.managedAgents != managedAgents else { return host }
            try db.query(
                "UPDATE hosts SET managed_agents = ? WHERE id = ?", [.text(Codec.agents(managedAgents)), .text(hostId)])
            host.managedAgents = managedAgents
            try Self.appendAudit(.hostAgentsUpdated(host, at: now), db)
            return host
        }
    }
}
