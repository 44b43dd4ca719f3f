import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Hosts

extension PostgresStore {
    public func registerHost(
        registrationTokenHash: String, name: String, managedAgents: [AgentType], credential: Secret, now: Date
    ) async throws -> Host {
        let host = Host(id: Identifier.make("host"), name: name, managedAgents: managedAgents, registeredAt: now)
        return try await write { db in
            // Two hosts racing for one token: the second UPDATE waits for the first's row lock, then
            // finds the token used and changes nothing.
            let used = try await db.query(
                """
                UPDATE registration_tokens SET used_at = \(StoredTime.ms(now)), used_by_host_id = \(host.id)
                WHERE secret_hash = \(registrationTokenHash) AND used_at IS NULL AND revoked_at IS NULL
                    AND expires_at > \(StoredTime.ms(now))
                RETURNING id
                """)
            guard used.count == 1 else {
                throw StoreError(
                    .invalidRegistrationToken,
                    "the registration token is unknown, already used, expired or revoked; ask an admin for a new one (POST /api/v1/registration-tokens)"
                )
            }
            try await db.query(
                """
                INSERT INTO hosts (id, name, managed_agents, credential_hash, registered_at)
                VALUES (\(host.id), \(name), \(StoredForm.agents(managedAgents)), \(credential.hash),
                        \(StoredTime.ms(now)))
                """)
            let usedToken = try used.first.map { try $0.decode(String.self) }
            try await Self.appendAudit(.hostRegistered(host, registrationTokenId: usedToken, at: now), db)
            return host
        }
    }

    public func host(id: String) async throws -> Host? {
        try await read { db in
            try await db.query("SELECT * FROM hosts WHERE id = \(id)").first.map { try Self.host($0) }
        }
    }

    public func host(credentialHash: String) async throws -> Host? {
        try await read { db in
            try await db.query("SELECT * FROM hosts WHERE credential_hash = \(credentialHash)").first.map {
                try Self.host($0)
            }
        }
    }

    public func listHosts(_ filter: HostFilter, cursor: String?, limit: Int?) async throws -> HostPage {
        var conditions: [String] = []
        var bindings = PostgresBindings()
        if let name = filter.name {
            bindings.append(name)
            conditions.append("name = $\(bindings.count)")
        }
        if let prefix = filter.namePrefix {
            bindings.append(prefix)
            conditions.append("starts_with(name, $\(bindings.count))")
        }
        if let agentType = filter.agentType {
            // managed_agents is a JSON array of agent type names, which need no escaping.
            bindings.append("\"\(agentType.rawValue)\"")
            conditions.append("strpos(managed_agents, $\(bindings.count)) > 0")
        }
        let count = PostgresQuery(
            unsafeSQL: "SELECT COUNT(*) FROM hosts"
                + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")), binds: bindings)
        if let cursor {
            guard let (name, id) = PageCursor.decodeHost(cursor) else { throw PageCursor.malformed }
            bindings.append(name)
            bindings.append(id)
            conditions.append("(name, id) > ($\(bindings.count - 1), $\(bindings.count))")
        }
        var sql = "SELECT * FROM hosts" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
        sql += " ORDER BY name, id"
        if let limit {
            bindings.append(max(0, limit) + 1)
            sql += " LIMIT $\(bindings.count)"
        }
        let query = PostgresQuery(unsafeSQL: sql, binds: bindings)
        return try await read { db in
            let total = Int(try await db.query(count).first?.decode(Int64.self) ?? 0)
            let hosts = try await db.query(query).map { try Self.host($0) }
            guard let limit, hosts.count > limit else { return HostPage(hosts: hosts, nextCursor: nil, total: total) }
            let page = Array(hosts.prefix(max(0, limit)))
            return HostPage(
                hosts: page, nextCursor: page.last.map { PageCursor.encode(name: $0.name, id: $0.id) }, total: total)
        }
    }

    public func updateManagedAgents(hostId: String, managedAgents: [AgentType], now: Date) async throws -> Host {
        try await write { db in
            guard let row = try await db.query("SELECT * FROM hosts WHERE id = \(hostId) FOR UPDATE").first else {
                throw StoreError(.notFound, "no host with id \(hostId)")
            }
            var host = try Self.host(row)
            // A re-sync that changes nothing (every start of an orchestrator) is not a change.
            guard host.managedAgents != managedAgents else { return host }
            try await db.query(
                "UPDATE hosts SET managed_agents = \(StoredForm.agents(managedAgents)) WHERE id = \(hostId)")
            host.managedAgents = managedAgents
            try await Self.appendAudit(.hostAgentsUpdated(host, at: now), db)
            return host
        }
    }

    public func replaceHostCredential(hostId: String, credential: Secret, by actor: RunRequester?, now: Date)
        async throws
    {
        try await write { db in
            let replaced = try await db.query(
                """
                UPDATE hosts SET credential_hash = \(credential.hash), revoked_at = NULL WHERE id = \(hostId)
                RETURNING name
                """)
            guard let row = replaced.first else { throw StoreError(.notFound, "no host with id \(hostId)") }
            try await Self.appendAudit(
                AuditEntry(
                    at: now, action: .hostCredentialReplaced, actor: actor, targetId: hostId,
                    targetName: try row.decode(String.self)), db)
        }
    }

    public func revokeHost(id: String, by actor: RunRequester?, now: Date) async throws -> Host {
        // A value no credential hashes to: the host's calls, heartbeats and events are refused.
        let revokedCredential = Host.revokedCredentialPrefix + id + ":" + Secret.generate(prefix: "r").value
        return try await write { db in
            let wasRevoked =
                try await db.query("SELECT revoked_at FROM hosts WHERE id = \(id) FOR UPDATE").first.map {
                    try $0.decode(Int64?.self) != nil
                } ?? false
            try await db.query(
                """
                UPDATE hosts SET revoked_at = COALESCE(revoked_at, \(StoredTime.ms(now))),
                    credential_hash = CASE WHEN revoked_at IS NULL THEN \(revokedCredential) ELSE credential_hash END
                WHERE id = \(id)
                """)
            guard let row = try await db.query("SELECT * FROM hosts WHERE id = \(id)").first else {
                throw StoreError(.notFound, "no host with id \(id)")
            }
            let host = try Self.host(row)
            if !wasRevoked {
                try await Self.appendAudit(
                    AuditEntry(at: now, action: .hostRevoked, actor: actor, targetId: id, targetName: host.name), db)
            }
            return host
        }
    }

    public func hostCredentialHash(hostId: String) async throws -> String? {
        try await read { db in
            guard let row = try await db.query("SELECT id, credential_hash FROM hosts WHERE id = \(hostId)").first
            else { return nil }
            return try StoredValues(row, table: "hosts").identified().string(required: "credential_hash")
        }
    }

    public func hostCount() async throws -> Int {
        try await read { db in
            Int(
                try await db.query("SELECT count(*) FROM hosts WHERE revoked_at IS NULL")
                    .map { try $0.decode(Int64.self) }.first ?? 0)
        }
    }

    public func hostsNotHeard(since cutoff: Date) async throws -> [Host] {
        try await read { db in
            try await db.query(
                "SELECT * FROM hosts WHERE COALESCE(last_seen_at, registered_at) < \(StoredTime.ms(cutoff)) ORDER BY id"
            ).map { try Self.host($0) }
        }
    }
}
