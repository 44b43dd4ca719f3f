import Synchronization

/// The result of `operation`, or nil when it has not finished within `limit`. The operation is
/// then cancelled and awaited, so one that ignores cancellation still holds the caller up.
/// - Throws: The operation's error, or `CancellationError` when the calling task is cancelled
///   before either ends.
public func withTimeLimit<T: Sendable>(
    _ limit: Duration, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        return try await group.next() ?? nil
    }
}

/// The result of `operation`, or nil when it has not finished within `limit`; unlike
/// ``withTimeLimit(_:_:)``, the caller does not wait for an operation that ignores cancellation: it
/// is cancelled and left to end on its own, its result dropped. For an operation a client library
/// may never complete (a query written to a connection that closed under it).
///
/// Cancelling the calling task cancels the operation, and the caller waits for it at most
/// `cancellationGrace` more: an operation that honours cancellation ends as it would have, one
/// that does not is left behind and the caller gets `CancellationError`.
/// - Throws: The operation's error, or `CancellationError`.
public func abandoning<T: Sendable>(
    after limit: Duration, cancellationGrace: Duration = .seconds(1),
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T? {
    let work = Task { try await operation() }
    let outcome = FirstOutcome<T?>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T?, any Error>) in
            outcome.store(continuation)
            let timer = Task {
                guard (try? await Task.sleep(for: limit)) != nil else { return }
                work.cancel()
                outcome.resume(with: .success(nil))
            }
            Task {
                let result = await work.result
                timer.cancel()
                outcome.resume(with: result.map { $0 })
            }
        }
    } onCancel: {
        work.cancel()
        Task {
            try? await Task.sleep(for: cancellationGrace)
            outcome.resume(with: .failure(CancellationError()))
        }
    }
}

/// A continuation resumed by the first of several results; the later ones are dropped.
private final class FirstOutcome<T: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<T, any Error>?>(nil)

    func store(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation.withLock { $0 = continuation }
    }

    func resume(with result: Result<T, any Error>) {
        continuation.withLock { $0.take() }?.resume(with: result)
    }
}
