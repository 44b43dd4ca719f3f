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

    @Test("abandoning: an operation that ignores cancellation is left behind at the limit")
    func abandonsAnOperationThatIgnoresCancellation() async throws {
        #expect(try await abandoning(after: .seconds(10)) { 42 } == 42)
        // The awaiting variant waits for an operation that ignores cancellation.
        let started = ContinuousClock.now
        let waited: Int? = try await withTimeLimit(.milliseconds(50)) {
            // Awaiting another task's value does not end when this task is cancelled.
            await Task.detached { try? await Task.sleep(for: .seconds(2)) }.value
            return 1
        }
        #expect(waited == nil)
        #expect(ContinuousClock.now - started >= .seconds(2))
        // The abandoning one returns at its limit, long before the operation's minute.
        let abandonedAt = ContinuousClock.now
        let abandoned: Int? = try await abandoning(after: .milliseconds(50)) {
            await Task.detached { try? await Task.sleep(for: .seconds(60)) }.value
            return 1
        }
        #expect(abandoned == nil)
        let took = ContinuousClock.now - abandonedAt
        #expect(took < .seconds(30), "took \(took)")
    }

    @Test("abandoning: the operation's error is thrown, and cancelling the caller cancels the operation")
    func abandoningPassesErrorsAndCancellation() async throws {
        await #expect(throws: Failure.self) {
            try await abandoning(after: .seconds(10)) { () async throws -> Int in throw Failure() }
        }
        // One that honours cancellation ends with it; one that ignores it is left behind after the grace.
        try await expectCancelledPromptly(cancellationGrace: .seconds(1)) {
            try await Task.sleep(for: .seconds(30))
        }
        try await expectCancelledPromptly(cancellationGrace: .milliseconds(100)) {
            await Task.detached { try? await Task.sleep(for: .seconds(30)) }.value
        }
    }

    /// Cancels a caller of `abandoning` running `operation` and expects `CancellationError` soon.
    func expectCancelledPromptly(
        cancellationGrace: Duration, _ operation: @escaping @Sendable () async throws -> Void
    ) async throws {
        let caller = Task {
            try await abandoning(after: .seconds(30), cancellationGrace: cancellationGrace) {
                try await operation()
                return 1
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        let cancelled = ContinuousClock.now
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        #expect(ContinuousClock.now - cancelled < .seconds(10))
    }
}
