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
