/// Makes the end-of-agent work (collecting logs, removing the container, reaping stragglers) happen
/// once per agent even when `wait` and `stop` race: the first caller does it, concurrent callers
/// get its result, later callers get the remembered exit.
actor CompletionMemo {
    private var results: [String: AgentExit] = [:]
    private var order: [String] = []
    private var inFlight: [String: [CheckedContinuation<AgentExit, any Error>]] = [:]
    /// Bounded: an orchestrator runs many agents over its life; old results are of no use.
    private let capacity = 1024

    /// The remembered exit of a finished agent.
    func result(_ key: String) -> AgentExit? { results[key] }

    /// Runs `body` for `key` unless it ran (successfully) before or is running.
    func once(_ key: String, _ body: @Sendable () async throws -> AgentExit) async throws -> AgentExit {
        if let result = results[key] { return result }
        if inFlight[key] != nil {
            return try await withCheckedThrowingContinuation { inFlight[key, default: []].append($0) }
        }
        inFlight[key] = []
        let outcome: Result<AgentExit, any Error>
        do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        if case .success(let exit) = outcome {
            results[key] = exit
            order.append(key)
            if order.count > capacity { results[order.removeFirst()] = nil }
        }
        for waiter in inFlight.removeValue(forKey: key) ?? [] { waiter.resume(with: outcome) }
        return try outcome.get()
    }
}
