import AgentJobsCore
import AgentJobsStore
import Hummingbird

extension ControlPlaneAPI {
    var tokenRoutes: [APIRoute] {
        [
            APIRoute(.post, "/api/v1/registration-tokens", .scope(.admin)) { request, context in
                var reader = try JSONObjectReader(try await JSONResponse.body(of: request) ?? .object([:]))
                let maxLifetime = Int(configuration.registrationTokenLifetime.seconds)
                let lifetime = try reader.int("expiresInSeconds", range: 60...(30 * 24 * 3600)) ?? maxLifetime
                try reader.rejectUnknownFields()
                let (token, secret) = try await store.createRegistrationToken(
                    expiresAt: now.addingTimeInterval(Double(lifetime)), by: context.principal?.requester, now: now)
                return try JSONResponse.make(
                    status: .created,
                    RegistrationTokenResponse(id: token.id, token: secret.value, expiresAt: token.expiresAt))
            },
            APIRoute(.get, "/api/v1/registration-tokens", .scope(.admin)) { _, _ in
                let now = self.now
                let tokens = try await store.listRegistrationTokens()
                return try JSONResponse.make([
                    "registrationTokens": tokens.map { RegistrationTokenResource($0, now: now) }
                ])
            },
            APIRoute(.post, "/api/v1/registration-tokens/:id/revoke", .scope(.admin)) { _, context in
                // Registration reads the token table itself (nothing is cached): the revocation holds
                // at once on every replica.
                let now = self.now
                let token = try await store.revokeRegistrationToken(
                    id: try context.parameters.require("id"), by: context.principal?.requester, now: now)
                return try JSONResponse.make(RegistrationTokenResource(token, now: now))
            },
            APIRoute(.get, "/api/v1/tokens", .scope(.admin)) { _, _ in
                try JSONResponse.make(["tokens": try await store.listAPITokens().map(TokenResource.init)])
            },
            APIRoute(.post, "/api/v1/tokens", .scope(.admin)) { request, context in
                var reader = try JSONObjectReader(try await JSONResponse.requiredBody(of: request))
                let name = try reader.requiredName("name")
                let scopeName = try reader.requiredString("scope")
                guard let scope = TokenScope(rawValue: scopeName) else {
                    throw ValidationError(field: "scope", message: "must be one of read, write, admin")
                }
                try reader.rejectUnknownFields()
                let (token, secret) = try await store.createAPIToken(
                    name: name, scope: scope, by: context.principal?.requester, now: now)
                return try JSONResponse.make(
                    status: .created, CreatedTokenResponse(token: TokenResource(token), secret: secret.value))
            },
            APIRoute(.delete, "/api/v1/tokens/:id", .scope(.admin)) { _, context in
                let token = try await store.revokeAPIToken(
                    id: try context.parameters.require("id"), by: context.principal?.requester, now: now)
                authenticator.invalidate()
                return try JSONResponse.make(TokenResource(token))
            },
        ]
    }
}

struct RegistrationTokenResponse: Encodable {
    var id: String
    var token: String
    var expiresAt: Date
}

struct CreatedTokenResponse: Encodable {
    var token: TokenResource
    var secret: String
}

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
