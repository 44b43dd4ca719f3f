import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: API tokens

extension SQLiteStore {
    public func createAPIToken(name: String, scope: TokenScope, by actor: RunRequester?, now: Date) async throws -> (
        APIToken, Secret
    ) {
        let secret = Secret.generate(prefix: "ajt")
        let token = APIToken(id: Identifier.make("tok"), name: name, scope: scope, createdAt: now, revokedAt: nil)
        try await write { db in
            try db.query(
                "INSERT INTO api_tokens (id, name, scope, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                [.text(token.id), .text(name), .text(scope.rawValue), .text(secret.hash), .date(now)])
            try Self.appendAudit(
                AuditEntry(
                    at: now, action: .apiTokenCreated, actor: actor, targetId: token.id, targetName: name,
                    summary: "scope \(scope.rawValue)"), db)
        }
        return (token, secret)
    }

    public func apiToken(secretHash: String) async throws -> APIToken? {
        try await read { db in
            try db.query("SELECT * FROM api_tokens WHERE secret_hash = ? AND revoked_at IS NULL", [.text(secretHash)])
                .first.map(Self.apiToken)
        }
    }

    public func listAPITokens() async throws -> [APIToken] {
        try await read { db in try db.query("SELECT * FROM api_tokens ORDER BY created_at, id").map(Self.apiToken) }
    }

    public func revokeAPIToken(id: String, by actor: RunRequester?, now: Date) async throws -> APIToken {
        try await write { db in
            try db.query(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [.date(now), .text(id)])
            let revoked = db.changes == 1
            guard let row = try db.query("SELECT * FROM api_tokens WHERE id = ?", [.text(id)]).first else {
                throw StoreError(.notFound, "no API token with id \(id)")
            }
            let token = try Self.apiToken(row)
            if revoked {
                try Self.appendAudit(
                    AuditEntry(at: now, action: .apiTokenRevoked, actor: actor, targetId: id, targetName: token.name),
                    db)
            }
            return token
        }
    }
}
