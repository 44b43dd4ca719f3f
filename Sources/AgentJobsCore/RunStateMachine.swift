#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A change in a run's life, as reported by its host (or decided by the control plane's backstops).
public enum RunEvent: Sendable, Hashable {
    case started(at: Date)
    case succeeded(at: Date, exitCode: Int?)
    case failed(at: Date, exitCode: Int?, errorSummary: String?)
    case timedOut(at: Date, errorSummary: String?)
    /// `errorSummary`: why, when the control plane closed the run itself (e.g. no host ever accepted it).
    case canceled(at: Date, errorSummary: String? = nil)

    /// The event's kind, without its data.
    public var kind: RunEventKind {
        switch self {
        case .started: return .start
        case .succeeded: return .succeed
        case .failed: return .fail
        case .timedOut: return .timeOut
        case .canceled: return .cancel
        }
    }

    public var at: Date {
        switch self {
        case .started(let at), .succeeded(let at, _), .failed(let at, _, _), .timedOut(let at, _),
            .canceled(let at, _):
            return at
        }
    }
}

/// The kinds of ``RunEvent``, for the status transition table.
public enum RunEventKind: String, Sendable, CaseIterable, Hashable {
    case start, succeed, fail, timeOut, cancel
}

/// What applying an event to a status does.
public enum RunTransition: Sendable, Hashable {
    /// The status moves.
    case move(to: RunStatus)
    /// The event changes nothing: a duplicate, a replay, or a late event for a finished run.
    case ignore(reason: String)
}

extension RunStatus {
    /// The lifecycle's transition table. Terminal states are final; repeated or late events are
    /// ignored, never applied twice or backwards.
    public func transition(on event: RunEventKind) -> RunTransition {
        switch (self, event) {
        case (.queued, .start): return .move(to: .running)
        case (.queued, .succeed):
            // A run cannot succeed without starting; ``Run/apply(_:)`` records the implied start first.
            return .ignore(reason: "a queued run cannot succeed before it started")
        case (.queued, .fail), (.running, .fail): return .move(to: .failed)
        case (.queued, .timeOut), (.running, .timeOut): return .move(to: .timedOut)
        case (.queued, .cancel), (.running, .cancel): return .move(to: .canceled)
        case (.running, .start): return .ignore(reason: "already running")
        case (.running, .succeed): return .move(to: .succeeded)
        case (.succeeded, _), (.failed, _), (.timedOut, _), (.canceled, _):
            return .ignore(reason: "the run already ended as \(rawValue)")
        }
    }
}

extension Run {
    /// Applies an event to the run, idempotently.
    ///
    /// A `succeeded` that arrives while the run is still queued (its `started` was lost or is late)
    /// records the start at the same instant first, so the run never skips `running`.
    /// - Returns: Whether the run changed.
    @discardableResult
    public mutating func apply(_ event: RunEvent) -> Bool {
        if status == .queued, case .succeeded(let at, _) = event {
            apply(.started(at: at))
        }
        guard case .move(let next) = status.transition(on: event.kind) else { return false }
        status = next
        if next.isTerminal { heldUntil = nil }
        switch event {
        case .started(let at):
            startedAt = at
        case .succeeded(let at, let exitCode):
            finishedAt = at
            self.exitCode = exitCode ?? 0
        case .failed(let at, let exitCode, let summary):
            finishedAt = at
            self.exitCode = exitCode
            errorSummary = summary.map { ErrorSummary.capped($0) }
        case .timedOut(let at, let summary):
            finishedAt = at
            errorSummary = summary.map { ErrorSummary.capped($0) }
        case .canceled(let at, let summary):
            finishedAt = at
            if let summary { errorSummary = ErrorSummary.capped(summary) }
        }
        return true
    }
}

/// What one run lifecycle event reported by a host does to its run: decided by
/// ``RunLifecycleEvent/outcome(on:)`` from the two values alone, so every store applies the same rules.
public enum RunEventOutcome: Sendable, Hashable {
    /// The run's status moved; the run as stored afterwards.
    case applied(Run)
    /// Nothing changed (a duplicate, a replay, an out-of-order or stale event); the run as stored.
    case ignored(Run, reason: String)
    /// The host reports a run as started that the control plane already closed before any start
    /// was recorded (canceled while queued, or given up as host lost): the store writes a
    /// `RunCancel` to the outbox in the same transaction so the host stops it.
    case stopRequested(Run)
    /// No such run (never existed, or removed by retention).
    case unknownRun
    /// The run was dispatched to another host: the event is not trusted.
    case wrongHost(expected: String)

    /// The run after the event, when there is one.
    public var run: Run? {
        switch self {
        case .applied(let run), .ignored(let run, _), .stopRequested(let run): return run
        case .unknownRun, .wrongHost: return nil
        }
    }
}

extension RunLifecycleEvent {
    /// What this event does to `run` (the run it names, as stored; `nil` when there is none): the
    /// whole acceptance rule — the run's host, the dispatch epoch, which event types move a status,
    /// a start reported for a run closed before it started, and the transition table.
    public func outcome(on run: Run?) -> RunEventOutcome {
        guard var run else { return .unknownRun }
        guard run.hostId == hostId else { return .wrongHost(expected: run.hostId) }
        guard dispatchEpoch == run.dispatchEpoch else {
            return .ignored(
                run, reason: "event for dispatch epoch \(dispatchEpoch); the run is at \(run.dispatchEpoch)")
        }
        guard let change = runEvent else {
            return .ignored(run, reason: "\(type.rawValue) changes no status")
        }
        if run.status.isTerminal, run.startedAt == nil, type == .started {
            // The control plane closed the run before any start was recorded (canceled while queued,
            // or given up on a silent host), yet the host started it: it must stop. A `started`
            // for a run whose start was recorded is only a replay.
            return .stopRequested(run)
        }
        guard run.apply(change) else {
            return .ignored(run, reason: "\(type.rawValue) does not apply to a \(run.status.rawValue) run")
        }
        return .applied(run)
    }
}

/// What a cancel request does, decided from the run alone (every store applies this).
public enum CancelDecision: Sendable, Hashable {
    /// The run already ended: nothing to cancel.
    case alreadyEnded
    /// A cancel was requested before: nothing more to do.
    case alreadyRequested
    /// Record the request and queue a `RunCancel`; when `withdrawDispatch`, first try to withdraw
    /// the run's dispatch from the outbox (a queued run whose dispatch no relay sent yet is canceled
    /// on the spot).
    case request(withdrawDispatch: Bool)
}

extension Run {
    /// What a cancel request does to this run now.
    public var cancelDecision: CancelDecision {
        guard status.isActive else { return .alreadyEnded }
        if cancelRequestedAt != nil { return .alreadyRequested }
        return .request(withdrawDispatch: status == .queued)
    }

    /// The run once a cancel was requested at `now`: canceled at once when its dispatch was
    /// withdrawn before any host could read it, else still active with the request recorded (the
    /// host reports how it ends). A `RunCancel` is queued either way: after a withdrawal, for a relay
    /// that read the dispatch just before and is publishing it (the cancel, on the same key, follows
    /// it and keeps the host from launching it).
    public func cancelRequested(at now: Date, by requester: RunRequester? = nil, dispatchWithdrawn: Bool) -> Run {
        var run = self
        run.cancelRequestedAt = now
        run.cancelRequestedBy = requester
        if dispatchWithdrawn { run.apply(.canceled(at: now)) }
        return run
    }
}
