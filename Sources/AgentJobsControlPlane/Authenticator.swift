import AgentJobsCore
import AgentJobsStore
import Hummingbird
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What a route requires of the caller.
enum Access: Sendable, Equatable {
    /// Nothing (health check, API description).
    case open
    /// An API token with at least this scope.
    case scope(TokenScope)
    /// A registration token, checked by the handler itself (it is used up on success).
    case registrationToken
    /// The credential of the host named in the path.
    case host
}

/// Resolves bearer tokens to principals, with a short cache so that a busy API does not read the
/// token table on every request. A revoked token stops working within ``cacheLifetime``.
///
/// The cache is keyed by the token's SHA-256 (never the token itself, whose length the caller
/// chooses), keeps known tokens and, apart and in a small bounded set, unknown ones; a token longer
/// than ``maxTokenBytes`` is no token of ours and is refused without a lookup. So a flood of random
/// tokens costs bounded memory.
final class Authenticator: Sendable {
    static let cacheLifetime: Duration = .seconds(4)
    /// Our tokens and credentials are about 50 bytes.
    static let maxTokenBytes = 256
    private static let knownLimit = 10_000
    private static let unknownLimit = 1_000

    private struct Cache {
        var known: [String: (principal: Principal, expires: ContinuousClock.Instant)] = [:]
        var unknown: [String: ContinuousClock.Instant] = [:]
    }

    private let store: any Store
    private let cache = Mutex(Cache())

    init(store: any Store) {
        self.store = store
    }

    /// The bearer token of a request, if it has one.
    static func bearer(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = String(parts[1]).trimmingWhitespace()
        return token.isEmpty ? nil : token
    }

    /// Checks a request against a route's access rule.
    /// - Throws: ``APIError`` 401 without a valid token, 403 when the token lacks the scope.
    func authorize(_ request: Request, access: Access, hostId: String? = nil) async throws -> Principal? {
        switch access {
        case .open, .registrationToken:
            return nil
        case .scope(let needed):
            guard let token = Self.bearer(request), let principal = try await principal(for: token) else {
                throw APIError.unauthenticated
            }
            guard case .user(let apiToken) = principal else {
                throw APIError.forbidden("a host credential cannot call this endpoint; use an API token")
            }
            guard apiToken.scope >= needed else {
                throw APIError.forbidden(
                    "this needs a token with scope '\(needed.rawValue)'; yours has '\(apiToken.scope.rawValue)'")
            }
            return principal
        case .host:
            guard let token = Self.bearer(request), let principal = try await principal(for: token) else {
                throw APIError.unauthenticated
            }
            guard case .host(let host) = principal, host.id == hostId else {
                throw APIError.forbidden("only the host's own credential can change host \(hostId ?? "")")
            }
            return principal
        }
    }

    private func principal(for token: String) async throws -> Principal? {
        guard token.utf8.count <= Self.maxTokenBytes else { return nil }
        let now = ContinuousClock.now
        let hash = Secret.hash(token)
        let cached: Principal?? = cache.withLock { cache in
            if let known = cache.known[hash], known.expires > now { return .some(known.principal) }
            if let expires = cache.unknown[hash], expires > now { return .some(nil) }
            return nil
        }
        if let cached { return cached }
        let principal: Principal?
        if token.hasPrefix("ajh_") {
            principal = try await store.host(credentialHash: hash).map(Principal.host)
        } else {
            principal = try await store.apiToken(secretHash: hash).map(Principal.user)
        }
        let expires = now.advanced(by: Self.cacheLifetime)
        cache.withLock { cache in
            if let principal {
                if cache.known.count >= Self.knownLimit { cache.known.removeAll(keepingCapacity: true) }
                cache.known[hash] = (principal, expires)
            } else {
                if cache.unknown.count >= Self.unknownLimit { cache.unknown.removeAll(keepingCapacity: true) }
                cache.unknown[hash] = expires
            }
        }
        return principal
    }

    /// Drops cached principals (after a revocation or a host change in this process).
    func invalidate() {
        cache.withLock { $0 = Cache() }
    }
}
