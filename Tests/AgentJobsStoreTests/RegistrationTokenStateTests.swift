import Foundation
import Testing

@testable import AgentJobsStore

@Suite("Registration token state")
struct RegistrationTokenStateTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func token(expiresIn seconds: Double, used: Bool = false, revoked: Bool = false) -> RegistrationToken {
        var token = RegistrationToken(
            id: "reg_1", createdAt: now.addingTimeInterval(-60), expiresAt: now.addingTimeInterval(seconds))
        if used {
            token.usedAt = now.addingTimeInterval(-30)
            token.usedByHostId = "host_1"
        }
        if revoked { token.revokedAt = now.addingTimeInterval(-10) }
        return token
    }

    @Test("a token is active until expiresAt and expired from then on, as registration judges it")
    func expiresAtExpiresAt() {
        #expect(Self.token(expiresIn: 1).state(at: Self.now) == .active)
        #expect(Self.token(expiresIn: 0).state(at: Self.now) == .expired)
        #expect(Self.token(expiresIn: -1).state(at: Self.now) == .expired)
    }

    @Test("a used or revoked token stays used or revoked after it would have expired")
    func usedAndRevokedOutrankExpiry() {
        #expect(Self.token(expiresIn: -1, used: true).state(at: Self.now) == .used)
        #expect(Self.token(expiresIn: 1, used: true).state(at: Self.now) == .used)
        #expect(Self.token(expiresIn: -1, revoked: true).state(at: Self.now) == .revoked)
        #expect(Self.token(expiresIn: 1, revoked: true).state(at: Self.now) == .revoked)
    }
}
