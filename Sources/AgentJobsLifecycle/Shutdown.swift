import ServiceLifecycle
import Synchronization

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

/// The result of `operation`, or nil as soon as the calling task is cancelled: the operation goes
/// on in a task of its own, its result unobserved. For sends whose result matters only while the
/// caller runs (a heartbeat, a host-tracking probe), so that a stop during a broker outage does not
/// wait for the transport's delivery timeout (30 s) before the role can exit.
public func abandoningOnCancel<T: Sendable>(_ operation: @escaping @Sendable () async -> T) async -> T? {
    let waiting = OnceContinuation<T?>()
    return await withTaskCancellationHandler {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            waiting.store(continuation)
            // Cancelled before the continuation was stored: the handler found nothing to resume.
            if Task.isCancelled {
                waiting.resume(returning: nil)
                return
            }
            Task { waiting.resume(returning: await operation()) }
        }
    } onCancel: {
        waiting.resume(returning: nil)
    }
}

/// A continuation resumed at most once, by whichever comes first.
private final class OnceContinuation<T: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<T, Never>?>(nil)

    func store(_ continuation: CheckedContinuation<T, Never>) {
        self.continuation.withLock { $0 = continuation }
    }

    func resume(returning value: T) {
        continuation.withLock { $0.take() }?.resume(returning: value)
    }
}
