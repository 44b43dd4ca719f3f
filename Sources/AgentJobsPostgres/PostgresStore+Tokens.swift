import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: API tokens

extension PostgresStore {
    public func createAPIToken(name: String, scope: TokenScope, by actor: RunRequester?, now: Date) async throws -> (
        APIToken, Secret
    ) {
        let secret = Secret.generate(prefix: "ajt")
        let token = APIToken(id: Identifier.make("tok"), name: name, scope: scope, createdAt: now, revokedAt: nil)
        try await write { db in
            try await db.query(
                """
                INSERT INTO api_tokens (id, name, scope, secret_hash, created_at)
                VALUES (\(token.id), \(name), \(scope.rawValue), \(secret.hash), \(StoredTime.ms(now)))
                """)
            try await Self.appendAudit(
                AuditEntry(
                    at: now, action: .apiTokenCreated, actor: actor, targetId: token.id, targetName: name,
                    summary: "scope \(scope.rawValue)"), db)
        }
        return (token, secret)
    }

    public func apiToken(secretHash: String) async throws -> APIToken? {
        try await read { db in
            try await db.query("SELECT * FROM api_tokens WHERE secret_hash = \(secretHash) AND revoked_at IS NULL")
                .first.map { try Self.apiToken($0) }
        }
    }

    public func listAPITokens() async throws -> [APIToken] {
        try await read { db in
            try await db.query("SELECT * FROM api_tokens ORDER BY created_at, id").map { try Self.apiToken($0) }
        }
    }

    public func revokeAPIToken(id: String, by actor: RunRequester?, now: Date) async throws -> APIToken {
        try await write { db in
            let revoked =
                try await db.query(
                    """
                    UPDATE api_tokens SET revoked_at = \(StoredTime.ms(now)) WHERE id = \(id) AND revoked_at IS NULL
                    RETURNING id
                    """
                ).count == 1
            guard let row = try await db.query("SELECT * FROM api_tokens WHERE id = \(id)").first else {
                throw StoreError(.notFound, "no API token with id \(id)")
            }
            let token = try Self.apiToken(row)
            if revoked {
                try await Self.appendAudit(
                    AuditEntry(at: now, action: .apiTokenRevoked, actor: actor, targetId: id, targetName: token.name),
                    db)
            }
            return token
        }
    }
}

// MARK: Registration tokens

extension PostgresStore {
    public func createRegistrationToken(expiresAt: Date, by actor: RunRequester?, now: Date) async throws -> (
        RegistrationToken, Secret
    ) {
        let secret = Secret.generate(prefix: "ajr")
        let token = RegistrationToken(id: Identifier.make("reg"), createdAt: now, expiresAt: expiresAt)
        try await write { db in
            try await db.query(
                """
                INSERT INTO registration_tokens (id, secret_hash, created_at, expires_at)
                VALUES (\(token.id), \(secret.hash), \(StoredTime.ms(now)), \(StoredTime.ms(expiresAt)))
                """)
            try await Self.appendAudit(
                AuditEntry(
                    at: now, action: .registrationTokenCreated, actor: actor, targetId: token.id,
                    summary: "expires \(ISO8601.format(expiresAt))"), db)
        }
        return (token, secret)
    }

    public func listRegistrationTokens() async throws -> [RegistrationToken] {
        try await read { db in
            try await db.query("\(unescaped: Self.registrationTokenSelect) ORDER BY created_at, id")
                .map { try Self.registrationToken($0) }
        }
    }

    public func revokeRegistrationToken(id: String, by actor: RunRequester?, now: Date) async throws
        -> RegistrationToken
    {
        try await write { db in
            let revoked = try await db.query(
                """
                UPDATE registration_tokens SET revoked_at = \(StoredTime.ms(now))
                WHERE id = \(id) AND used_at IS NULL AND revoked_at IS NULL
                RETURNING id
                """)
            if revoked.count == 1 {
                try await Self.appendAudit(
                    AuditEntry(at: now, action: .registrationTokenRevoked, actor: actor, targetId: id), db)
            }
            guard let row = try await db.query("\(unescaped: Self.registrationTokenSelect) WHERE id = \(id)").first
            else {
                throw StoreError(.notFound, "no registration token with id \(id)")
            }
            let token = try Self.registrationToken(row)
            if token.usedAt != nil {
                // The token is spent; what a host got with it is its credential.
                let hostId = token.usedByHostId ?? "{id}"
                throw StoreError(
                    .conflict,
                    "registration token \(id) was already used by host \(hostId); revoke the host instead: POST /api/v1/hosts/\(hostId)/revoke"
                )
            }
            return token
        }
    }

    /// Every column but the secret's hash, which never leaves the store.
    private static let registrationTokenSelect = """
        SELECT id, created_at, expires_at, used_at, used_by_host_id, revoked_at FROM registration_tokens
        """
}
