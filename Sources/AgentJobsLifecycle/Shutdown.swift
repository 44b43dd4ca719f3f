import ServiceLifecycle

/// Runs `body` at once and then every `interval`, until the service group shuts down gracefully or
/// the task is cancelled (a wait in progress ends then too). For housekeeping services.
public func repeatUntilShutdown(every interval: Duration, _ body: () async -> Void) async {
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
        await body()
        do {
            try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        } catch {
            return
        }
    }
}

/// Runs `attempt` until it succeeds, waiting `interval` after each failure (handed to `failed`, to
/// be logged), and returns its result.
///
/// Returns nil, without trying again, once an attempt failed after the service was asked to shut
/// down gracefully or its task was cancelled: a stop is never held up by a dependency that is down
/// or has already stopped (a service group stops the consumer a service reads before the service
/// itself, so a commit after SIGTERM fails for good). Callers commit their input only after the
/// attempt succeeded, so what was given up is read and done again after the next start.
public func retryUntilShutdown<T>(
    every interval: Duration, failed: (any Error) -> Void, _ attempt: () async throws -> T
) async -> T? {
    while true {
        do {
            return try await attempt()
        } catch {
            failed(error)
        }
        if Task.isShuttingDownGracefully || Task.isCancelled { return nil }
        do {
            try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        } catch {
            return nil
        }
    }
}
