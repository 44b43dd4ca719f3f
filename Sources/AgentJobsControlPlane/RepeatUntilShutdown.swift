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
