import AgentJobsCore
import Testing

@Suite("Time limit")
struct TimeLimitTests {
    struct Failure: Error {}

    @Test("an operation that ends in time gives its result; one that does not is cancelled and gives nil")
    func resultOrNil() async throws {
        #expect(try await withTimeLimit(.seconds(10)) { 42 } == 42)
        let started = ContinuousClock.now
        let late: Int? = try await withTimeLimit(.milliseconds(50)) {
            try await Task.sleep(for: .seconds(30))
            return 1
        }
        #expect(late == nil)
        #expect(ContinuousClock.now - started < .seconds(10), "the slow operation was not cancelled")
    }

    @Test("an operation's error is thrown")
    func errorIsThrown() async {
        await #expect(throws: Failure.self) { try await withTimeLimit(.seconds(10)) { throw Failure() } }
    }
}
