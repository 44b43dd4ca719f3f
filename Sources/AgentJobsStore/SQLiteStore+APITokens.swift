import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: API tokens

extension SQLiteStore {
    public func createAPIToken(name: String, scope: TokenScope, now: Date) async throws -> (APIToken, Secret) {
        let secret = Secret.generate(prefix: "ajt")
        let token = APIToken(id: Identifier.make("tok"), name: name, scope: scope, createdAt: now, revokedAt: nil)
        try await write { db in
            try db.query(
                "INSERT INTO api_tokens (id, name, scope, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                [.text(token.id), .text(name), .text(scope.rawValue), .text(secret.hash), .date(now)])
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

    public func revokeAPIToken(id: String, now: Date) async throws -> APIToken {
        try await write { db in
            try db.query(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [.date(now), .text(id)])
            guard let row = try db.query("SELECT * FROM api_tokens WHERE id = ?", [.text(id)]).first else {
                throw StoreError(.notFound, "no API token with id \(id)")
            }
            return try Self.apiToken(row)
        }
    }
}
