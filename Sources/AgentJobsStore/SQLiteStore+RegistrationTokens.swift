import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension SQLiteStore {
    public func createRegistrationToken(expiresAt: Date, by actor: RunRequester?, now: Date) async throws -> (
        RegistrationToken, Secret
    ) {
        let secret = Secret.generate(prefix: "ajr")
        let token = RegistrationToken(id: Identifier.make("reg"), createdAt: now, expiresAt: expiresAt)
        try await write { db in
            try db.query(
                "INSERT INTO registration_tokens (id, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
                [.text(token.id), .text(secret.hash), .date(now), .date(expiresAt)])
            try Self.appendAudit(
                AuditEntry(
                    at: now, action: .registrationTokenCreated, actor: actor, targetId: token.id,
                    summary: "expires \(ISO8601.format(expiresAt))"), db)
        }
        return (token, secret)
    }

    public func listRegistrationTokens() async throws -> [RegistrationToken] {
        try await read { db in
            try db.query(Self.registrationTokenSelect + " ORDER BY created_at, id").map(Self.registrationToken)
        }
    }

    public func revokeRegistrationToken(id: String, by actor: RunRequester?, now: Date) async throws
        -> RegistrationToken
    {
        try await write { db in
            try db.query(
                "UPDATE registration_tokens SET revoked_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
                [.date(now), .text(id)])
            if db.changes == 1 {
                try Self.appendAudit(
                    AuditEntry(at: now, action: .registrationTokenRevoked, actor: actor, targetId: id), db)
            }
            guard let row = try db.query(Self.registrationTokenSelect + " WHERE id = ?", [.text(id)]).first else {
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

    private static func registrationToken(_ row: SQLiteRow) throws -> RegistrationToken {
        guard let id = row.string("id"), let createdAt = row.date("created_at"),
            let expiresAt = row.date("expires_at")
        else {
            throw StoreError(
                .corrupt,
                "registration_tokens: row \(row.string("id") ?? "with no id") has no created_at or expires_at")
        }
        return RegistrationToken(
            id: id, createdAt: createdAt, expiresAt: expiresAt, usedAt: row.date("used_at"),
            usedByHostId: row.string("used_by_host_id"), revokedAt: row.date("revoked_at"))
    }
}
