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
