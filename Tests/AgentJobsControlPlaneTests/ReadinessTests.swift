import AgentJobsControlPlane
import AgentJobsCore
import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

@Suite("Readiness")
struct ReadinessTests {
    @Test("/readyz answers 200 when every check passes, else 503 naming each failing check and why")
    func namesFailingChecks() async throws {
        let ready = Readiness(checks: [ReadinessCheck("database") { nil }, ReadinessCheck("broker") { nil }])
        let (okStatus, okBody) = try await Self.body(ready)
        #expect(okStatus == .ok)
        #expect(okBody == .object(["status": .string("ready")]))

        let failing = Readiness(checks: [
            ReadinessCheck("database") { nil }, ReadinessCheck("broker") { "no broker answered" },
            ReadinessCheck("consumers") { "no partition assigned" },
        ])
        let (status, body) = try await Self.body(failing)
        #expect(status == .serviceUnavailable)
        #expect(
            body
                == .object([
                    "status": .string("unavailable"),
                    "reason": .string("broker: no broker answered; consumers: no partition assigned"),
                    "failing": .object([
                        "broker": .string("no broker answered"), "consumers": .string("no partition assigned"),
                    ]),
                ]))
    }

    @Test("a check that hangs fails after 2 s instead of holding the probe, and answers are reused for 1 s")
    func hungCheckAndReuse() async throws {
        let calls = Mutex(0)
        let readiness = Readiness(checks: [
            ReadinessCheck("database") {
                calls.withLock { $0 += 1 }
                try? await Task.sleep(for: .seconds(60))
                return nil
            }
        ])
        let start = ContinuousClock.now
        #expect(await readiness.check() == ["database": "no answer within 2 s"])
        // Well before the check itself would end (60 s); not a timing bound (a busy machine delays it).
        #expect(ContinuousClock.now - start < .seconds(45))
        // Asked again at once: the answer is reused, the database not asked again.
        #expect(await readiness.check() == ["database": "no answer within 2 s"])
        #expect(calls.withLock { $0 } == 1)
    }

    /// The JSON body of `readiness`'s answer, through a router as `/readyz` serves it.
    static func body(_ readiness: Readiness) async throws -> (HTTPResponse.Status, JSONValue) {
        let router = Router()
        router.get("/readyz") { _, _ in try await readiness.response() }
        let result = Mutex<(HTTPResponse.Status, JSONValue)?>(nil)
        try await Application(router: router).test(.router) { client in
            let response = try await client.execute(uri: "/readyz", method: .get)
            let body = try JSONDecoder().decode(JSONValue.self, from: Data(response.body.readableBytesView))
            result.withLock { $0 = (response.status, body) }
        }
        return try #require(result.withLock { $0 })
    }
}
