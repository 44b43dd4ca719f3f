import Synchronization

/// The host's concurrency limit as a value: which runs hold one of the `limit` slots (launched, or
/// about to be), and which wait for one, in the order their dispatches were read. A run holds its
/// slot from its launch until it ends; an agent re-attached after a restart holds one too, over
/// the limit if need be (it is running whatever the limit says).
struct LaunchSlots: Sendable, Equatable {
    /// How a waiting run's turn ended.
    enum Turn: Sendable, Equatable {
        /// It holds a slot: launch it.
        case launch
        /// It no longer waits (canceled, its queue deadline passed, the orchestrator stopping).
        case withdrawn
    }

    /// Slots; nil for no limit.
    let limit: Int?
    private(set) var holding: Set<String> = []
    /// Waiting runs, first come first.
    private(set) var waiting: [String] = []

    init(limit: Int?) {
        self.limit = limit.map { max(1, $0) }
    }

    /// Takes a run's place in line (once). Behind anyone already waiting, so the order holds.
    /// - Returns: Whether it holds a slot at once.
    mutating func enqueue(_ runId: String) -> Bool {
        if holding.contains(runId) { return true }
        if waiting.contains(runId) { return false }
        if let limit, holding.count >= limit || !waiting.isEmpty {
            waiting.append(runId)
            return false
        }
        holding.insert(runId)
        return true
    }

    /// A run whose agent is already running (re-attached) holds a slot, whatever the limit.
    mutating func occupy(_ runId: String) {
        waiting.removeAll { $0 == runId }
        holding.insert(runId)
    }

    /// Takes a waiting run out of line.
    /// - Returns: Whether it was waiting.
    mutating func withdraw(_ runId: String) -> Bool {
        guard let index = waiting.firstIndex(of: runId) else { return false }
        waiting.remove(at: index)
        return true
    }

    /// A run ended (or gave up its place): its slot goes to the runs first in line.
    /// - Returns: The runs that hold a slot now, in order.
    mutating func release(_ runId: String) -> [String] {
        if withdraw(runId) { return [] }
        guard holding.remove(runId) != nil else { return [] }
        var granted: [String] = []
        while let limit, holding.count < limit, !waiting.isEmpty {
            let next = waiting.removeFirst()
            holding.insert(next)
            granted.append(next)
        }
        return granted
    }
}

/// ``LaunchSlots`` behind a lock, with the waiting runs' continuations: a run's place in line is
/// taken synchronously, in the order the intake read the dispatches, and its supervisor then waits
/// for its turn.
final class LaunchQueue: Sendable {
    private struct State {
        var slots: LaunchSlots
        var waiters: [String: CheckedContinuation<LaunchSlots.Turn, Never>] = [:]
        /// Turns decided before the run's supervisor asked.
        var decided: [String: LaunchSlots.Turn] = [:]
    }

    private let state: Mutex<State>

    init(limit: Int?) {
        state = Mutex(State(slots: LaunchSlots(limit: limit)))
    }

    var limit: Int? { state.withLock { $0.slots.limit } }
    /// Runs holding a slot.
    var holding: Int { state.withLock { $0.slots.holding.count } }
    /// Runs waiting for one.
    var waiting: Int { state.withLock { $0.slots.waiting.count } }

    func enqueue(_ runId: String) {
        state.withLock { state in
            if state.slots.enqueue(runId) { state.decided[runId] = .launch }
        }
        HostMetrics.runsWaiting.record(waiting)
    }

    func occupy(_ runId: String) {
        let waiter = state.withLock { state in
            state.slots.occupy(runId)
            return state.waiters.removeValue(forKey: runId)
        }
        waiter?.resume(returning: .launch)
    }

    /// Whether the run is in line for a slot (its turn not decided yet).
    func mustWait(_ runId: String) -> Bool {
        state.withLock { $0.slots.waiting.contains(runId) && $0.decided[runId] == nil }
    }

    /// Waits for the run's turn; a run never enqueued holds a slot at once.
    func turn(_ runId: String) async -> LaunchSlots.Turn {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<LaunchSlots.Turn, Never>) in
                let now: LaunchSlots.Turn? = state.withLock { state in
                    if let decided = state.decided.removeValue(forKey: runId) { return decided }
                    guard state.slots.waiting.contains(runId) else {
                        state.slots.occupy(runId)
                        return .launch
                    }
                    state.waiters[runId] = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            withdraw(runId)
        }
    }

    /// Ends a waiting run's turn without a slot (a cancel, its queue deadline, a stop).
    func withdraw(_ runId: String) {
        let waiter = state.withLock { state -> CheckedContinuation<LaunchSlots.Turn, Never>? in
            guard state.slots.withdraw(runId) else { return nil }
            guard let waiter = state.waiters.removeValue(forKey: runId) else {
                state.decided[runId] = .withdrawn
                return nil
            }
            return waiter
        }
        waiter?.resume(returning: .withdrawn)
        HostMetrics.runsWaiting.record(waiting)
    }

    /// A run ended or gave up: the next ones in line get its slot.
    func release(_ runId: String) {
        let (own, woken) = state.withLock {
            state -> (CheckedContinuation<LaunchSlots.Turn, Never>?, [CheckedContinuation<LaunchSlots.Turn, Never>]) in
            state.decided[runId] = nil
            // A run released while it still waits (its supervisor gave up) leaves the line.
            let own = state.waiters.removeValue(forKey: runId)
            var woken: [CheckedContinuation<LaunchSlots.Turn, Never>] = []
            for granted in state.slots.release(runId) {
                if let waiter = state.waiters.removeValue(forKey: granted) {
                    woken.append(waiter)
                } else {
                    state.decided[granted] = .launch
                }
            }
            return (own, woken)
        }
        own?.resume(returning: .withdrawn)
        for waiter in woken { waiter.resume(returning: .launch) }
        HostMetrics.runsWaiting.record(waiting)
    }
}
