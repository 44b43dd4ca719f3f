import AgentJobsCore
import AgentJobsStore
import Hummingbird
import Synchronization

/// One thing a role needs to do its work, asked by `/readyz`: nil when it is fine, else why not.
public struct ReadinessCheck: Sendable {
    /// What is checked (`database`, `broker`, `consumers`): the key in the 503 body's `failing`.
    public var name: String
    public var check: @Sendable () async -> String?

    public init(_ name: String, _ check: @escaping @Sendable () async -> String?) {
        self.name = name
        self.check = check
    }

    /// The database answers a trivial query.
    public static func store(_ store: any Store) -> ReadinessCheck {
        ReadinessCheck("database") {
            do {
                try await store.checkAvailable()
                return nil
            } catch let error as StoreError {
                return error.message
            } catch {
                return "\(error)"
            }
        }
    }
}

/// `GET /readyz`: 200 `{"status":"ready"}` while every check passes within ``timeout``; else 503
/// `{"status":"unavailable","reason":"database: …","failing":{"database":"…"}}` naming each
/// check that failed.
///
/// The endpoint needs no token, so a flood of probes must not become a flood of queries: an answer
/// is reused for ``reuse``, and while a check is running the previous answer is given. Each check
/// runs in a task of its own that is cancelled, not awaited, at the deadline: a database or broker
/// that hangs does not hang the probe.
public final class Readiness: Sendable {
    static let timeout: Duration = .seconds(2)
    static let reuse: Duration = .seconds(1)

    private struct State {
        /// The last answer: the failing checks and why (empty when ready).
        var last: (at: ContinuousClock.Instant, failing: [String: String])?
        var checking = false
    }

    private let checks: [ReadinessCheck]
    private let state = Mutex(State())

    public init(checks: [ReadinessCheck]) { self.checks = checks }

    public func response() async throws -> Response {
        let failing = await check()
        guard !failing.isEmpty else { return try JSONResponse.make(["status": "ready"]) }
        let reason = failing.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; ")
        return try JSONResponse.make(
            status: .serviceUnavailable,
            JSONValue.object([
                "status": .string("unavailable"), "reason": .string(reason),
                "failing": .object(failing.mapValues { .string($0) }),
            ]))
    }

    /// The checks that fail, and why; empty when ready.
    public func check() async -> [String: String] {
        enum Decision {
            case answer([String: String])
            case check
        }
        let now = ContinuousClock.now
        let decision = state.withLock { state -> Decision in
            if let last = state.last, state.checking || now - last.at < Self.reuse { return .answer(last.failing) }
            state.checking = true
            return .check
        }
        if case .answer(let failing) = decision { return failing }
        let failing = await withTaskGroup(of: (String, String?).self) { group in
            for check in checks { group.addTask { (check.name, await Self.ask(check)) } }
            var failing: [String: String] = [:]
            for await (name, failure) in group { failing[name] = failure }
            return failing
        }
        state.withLock { state in
            state.last = (ContinuousClock.now, failing)
            state.checking = false
        }
        return failing
    }

    private static func ask(_ check: ReadinessCheck) async -> String? {
        await withCheckedContinuation { continuation in
            let answer = Mutex<CheckedContinuation<String?, Never>?>(continuation)
            let resume = { @Sendable (failure: String?) in answer.withLock { $0.take() }?.resume(returning: failure) }
            let task = Task { resume(await check.check()) }
            Task {
                try? await Task.sleep(for: timeout)
                task.cancel()
                resume("no answer within \(Int(timeout.seconds)) s")
            }
        }
    }
}
