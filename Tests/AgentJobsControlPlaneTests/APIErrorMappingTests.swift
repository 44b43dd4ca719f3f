import AgentJobsCore
import AgentJobsStore
import Testing

@testable import AgentJobsControlPlane

@Suite("API error mapping")
struct APIErrorMappingTests {
    @Test("a request cancelled by a stopping server and a database outage are 503 unavailable; other errors stay bare")
    func unavailableMappings() throws {
        let cancelled = try #require(APIError.from(CancellationError()))
        #expect(cancelled.status == .serviceUnavailable)
        #expect(cancelled.code == "unavailable")
        let outage = try #require(APIError.from(StoreError(.unavailable, "database error: connection refused")))
        #expect(outage.status == .serviceUnavailable)
        #expect(outage.code == "unavailable")
        // Internals never reach the client: an unknown error is a bare 500 (nil here).
        struct Unexpected: Error {}
        #expect(APIError.from(Unexpected()) == nil)
        #expect(APIError.from(StoreError(.corrupt, "bad row")) == nil)
    }
}
