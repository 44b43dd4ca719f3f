import AgentJobsCore
import AgentJobsStore
import Hummingbird
import Synchronization

/// `GET /readyz`: 200 while the database answers a trivial query within ``timeout``, 503 with the
/// reason while it does not.
///
/// The endpoint needs no token, so a flood of probes must not become a flood of queries: an answer
/// is reused for ``reuse``, and while a check is running the previous answer is given. The check
/// runs in a task of its own that is cancelled, not awaited, at the deadline: a database that
/// hangs does not hang the probe.
final class Readiness: Sendable {
    static let timeout: Duration = .seconds(2)
    static let reuse: Duration = .seconds(1)

    private struct State {
        /// The last answer: nil when ready, else why not.
        var last: (at: ContinuousClock.Instant, failure: String?)?
        var checking = false
    }

    private let store: any Store
    private let state = Mutex(State())

    init(store: any Store) { self.store = store }

    func response() async throws -> Response {
        guard let failure = await check() else { return try JSONResponse.make(["status": "ready"]) }
        return try JSONResponse.make(
            status: .serviceUnavailable, ["status": "unavailable", "reason": "database: \(failure)"])
    }

    /// nil when the database answers, else why not.
    func check() async -> String? {
        enum Decision {
            case answer(String?)
            case check
        }
        let now = ContinuousClock.now
        let decision = state.withLock { state -> Decision in
            if let last = state.last, state.checking || now - last.at < Self.reuse { return .answer(last.failure) }
            state.checking = true
            return .check
        }
        if case .answer(let failure) = decision { return failure }
        let failure = await Self.ask(store)
        state.withLock { state in
            state.last = (ContinuousClock.now, failure)
            state.checking = false
        }
        return failure
    }

    private static func ask(_ store: any Store) async -> String? {
        await withCheckedContinuation { continuation in
            let answer = Mutex<CheckedContinuation<String?, Never>?>(continuation)
            let resume = { @Sendable (failure: String?) in answer.withLock { $0.take() }?.resume(returning: failure) }
            let check = Task {
                do {
                    try await store.checkAvailable()
                    resume(nil)
                } catch let error as StoreError {
                    resume(error.message)
                } catch {
                    resume("\(error)")
                }
            }
            Task {
                try? await Task.sleep(for: timeout)
                check.cancel()
                resume("no answer within \(Int(timeout.seconds)) s")
            }
        }
    }
}
