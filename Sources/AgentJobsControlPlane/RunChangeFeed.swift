import AgentJobsCore
import AgentJobsStore
import CoreMetrics
import Logging
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Tells the console when runs change, through long polls on `GET /api/v1/runs/changes`: a poll
/// that names the feed's current token waits until runs change, then is answered with the next
/// token, and the console fetches what it shows again.
///
/// A token names this replica (a random instance id) and a generation of changes, counted in
/// memory as the store reports them (``Store/followRunChanges(_:)``: written by any replica or
/// role). An older token of this feed is answered at once as a change. A token from another
/// replica or an earlier process is taken as current when its age (sent by the client) shows that
/// this replica heard of no change since; otherwise it is answered at once as a change. So behind a
/// load balancer without affinity polls still wait, and across a restart a console refreshes once
/// and misses nothing.
///
/// When the feed does not follow the store (not started, the database lost, shutting down, or
/// too many polls waiting), polls are answered at once with `live: false`, and the console falls
/// back to polling the lists.
public final class RunChangeFeed: Sendable {
    /// What a poll is answered.
    public struct Answer: Sendable, Hashable {
        /// The token to send with the next poll.
        public var token: String
        /// Runs may have changed since the token the poll sent.
        public var changed: Bool
        /// The feed follows the store: waiting on it works.
        public var live: Bool

        public init(token: String, changed: Bool, live: Bool) {
            self.token = token
            self.changed = changed
            self.live = live
        }
    }

    /// The most polls one replica keeps waiting; more are answered at once with `live: false`.
    public static let maxWaiting = 1_000
    /// `agentjobs_run_change_polls_waiting`: the polls waiting on this replica's feed.
    static var waitingPolls: Gauge { Gauge(label: "agentjobs_run_change_polls_waiting") }

    /// After losing the store, how long the feed waits before it follows again.
    static let retryDelay: Duration = .seconds(2)
    /// How much later than another replica this one may hear of the same change (a notification's
    /// delivery, SQLite's 250 ms reads), allowed for when it takes that replica's token as current.
    static let foreignTokenMargin: Duration = .seconds(2)

    private struct State {
        var generation: UInt64 = 0
        /// When the generation last moved.
        var lastChange: ContinuousClock.Instant?
        var following = false
        var closed = false
        var nextWaiter: UInt64 = 0
        /// Polls admitted to wait, counted from admission (before their continuation is registered).
        var admitted = 0
        var waiting: [UInt64: CheckedContinuation<Void, Never>] = [:]

        /// Ends every wait; returns the continuations to resume (outside the lock).
        mutating func releaseAll() -> [CheckedContinuation<Void, Never>] {
            defer { waiting.removeAll() }
            return Array(waiting.values)
        }
    }

    private let instance: String
    private let state = Mutex(State())

    public init() {
        // 12 random hex digits: unique among replicas and restarts for this purpose.
        let digits = String(UInt64.random(in: 0..<(1 << 48)), radix: 16)
        instance = String(repeating: "0", count: 12 - digits.count) + digits
    }

    private func token(_ generation: UInt64) -> String { "\(instance)-\(generation)" }

    /// Answers a poll: at once when runs changed since `after` or the feed is not live; otherwise
    /// when runs change, the feed closes, `wait` passes, or the calling task is cancelled.
    ///
    /// `after` is the current token, an older one of this feed (runs changed since), or another
    /// replica's or process's. Behind a load balancer without affinity a console's polls alternate
    /// between replicas, so another feed's token is taken as current when `age` says when the
    /// client received it and this feed has seen no change in that time (plus
    /// ``foreignTokenMargin``): the two replicas hear of the same changes, and only elapsed times are
    /// compared, never two machines' clocks. Without `age` it counts as a change.
    /// - Parameters:
    ///   - age: How long ago the client received `after`, by its own clock.
    public func next(after: String?, age: Duration? = nil, wait: Duration) async -> Answer {
        enum Start {
            case answer(changed: Bool, live: Bool)
            case wait(id: UInt64, generation: UInt64)
        }
        let now = ContinuousClock.now
        let start = state.withLock { current -> Start in
            let isCurrent = after == token(current.generation)
            guard current.following, !current.closed else { return .answer(changed: !isCurrent, live: false) }
            let taken = isCurrent || isForeign(after, heardOfNoChangeWithin: age, since: current.lastChange, now: now)
            guard taken, wait > .zero else { return .answer(changed: !taken, live: true) }
            guard current.admitted < Self.maxWaiting else { return .answer(changed: false, live: false) }
            current.admitted += 1
            Self.waitingPolls.record(current.admitted)
            current.nextWaiter += 1
            return .wait(id: current.nextWaiter, generation: current.generation)
        }
        switch start {
        case .answer(let changed, let live):
            return state.withLock { Answer(token: token($0.generation), changed: changed, live: live) }
        case .wait(let id, let generation):
            _ = try? await withTimeLimit(wait) { await self.waitForChange(id, from: generation) }
            return state.withLock { current in
                current.admitted -= 1
                Self.waitingPolls.record(current.admitted)
                return Answer(
                    token: token(current.generation), changed: current.generation != generation,
                    live: current.following && !current.closed)
            }
        }
    }

    /// Whether `after` is another feed's token that can be taken as current: its client received
    /// it `age` ago, and this feed has heard of no change in that time and the margin.
    private func isForeign(
        _ after: String?, heardOfNoChangeWithin age: Duration?, since lastChange: ContinuousClock.Instant?,
        now: ContinuousClock.Instant
    ) -> Bool {
        guard let after, let age, Self.isToken(after), !after.hasPrefix("\(instance)-"), let lastChange else {
            return false
        }
        return now - lastChange > age + Self.foreignTokenMargin
    }

    /// Whether `text` has the form of a token a feed gives: 12 lowercase hex digits, `-`, a count.
    /// Anything else is never taken as current (a client's bug or a fuzzer's input is answered at
    /// once, not held for the whole wait).
    static func isToken(_ text: String) -> Bool {
        let parts = text.utf8.split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 12, (1...20).contains(parts[1].count) else { return false }
        return parts[0].allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
            && parts[1].allSatisfy { (48...57).contains($0) }
    }

    /// Suspends until ``changed()``, a loss of the store or ``close()`` releases waiter `id`, or the
    /// task is cancelled; at once when the generation is no longer `generation`.
    private func waitForChange(_ id: UInt64, from generation: UInt64) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let registered = state.withLock { current -> Bool in
                    guard current.following, !current.closed, current.generation == generation, !Task.isCancelled
                    else { return false }
                    current.waiting[id] = continuation
                    return true
                }
                if !registered { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiting.removeValue(forKey: id) }?.resume()
        }
    }

    /// Runs changed: the generation moves on and every waiting poll is answered.
    func changed() {
        let released = state.withLock { current -> [CheckedContinuation<Void, Never>] in
            current.generation += 1
            current.lastChange = .now
            current.following = true
            return current.releaseAll()
        }
        for continuation in released { continuation.resume() }
    }

    /// The store was lost: polls are answered `live: false` until it reports changes again.
    /// - Returns: Whether the feed followed the store until now.
    @discardableResult
    private func lost() -> Bool {
        let (wasFollowing, released) = state.withLock { current in
            let wasFollowing = current.following
            current.following = false
            return (wasFollowing, current.releaseAll())
        }
        for continuation in released { continuation.resume() }
        return wasFollowing
    }

    /// Answers every waiting poll and every later one at once (a graceful shutdown: the HTTP
    /// server's drain must not wait out long polls).
    public func close() {
        let released = state.withLock { current -> [CheckedContinuation<Void, Never>] in
            current.closed = true
            return current.releaseAll()
        }
        for continuation in released { continuation.resume() }
    }

    /// Follows the store's run changes until the task is cancelled, following again after
    /// ``retryDelay`` when the database is lost (polls are answered `live: false` meanwhile).
    public func follow(_ store: any Store, logger: Logger) async {
        while !Task.isCancelled {
            do {
                try await store.followRunChanges { [self] in changed() }
            } catch is CancellationError {
                break
            } catch {
                if Task.isCancelled { break }
                if lost() {
                    logger.warning(
                        "lost the run change feed; consoles poll until it is back", metadata: ["error": "\(error)"])
                }
            }
            lost()
            try? await Task.sleep(for: Self.retryDelay)
        }
        lost()
    }
}
