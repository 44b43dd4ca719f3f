import AgentJobsStore
import AgentJobsTelemetry
import Hummingbird
import Logging
import ServiceLifecycle
import Tracing

/// Assembles the control plane's HTTP application from its parts.
public enum ControlPlaneServer {
    /// The router with the API, the console and `/metrics`, every request counted and timed (and
    /// written to the access log with `AGENTJOBS_LOG_FORMAT=json`).
    public static func router(api: ControlPlaneAPI) -> Router<AgentJobsRequestContext> {
        let router = Router(context: AgentJobsRequestContext.self)
        // A server span per request (continuing the caller's `traceparent`), when tracing is on.
        router.add(middleware: TracingMiddleware())
        router.add(
            middleware: HTTPTelemetry(
                accessLog: LogFormat.current == .json ? LogFormat.logger("agentjobs.http") : nil))
        router.get("/metrics") { _, _ in await MetricsRoute.response() }
        api.register(on: router)
        UIRoutes.register(on: router)
        return router
    }

    /// The HTTP server serving the API on `host:port`, with the run change feed its long polls wait on.
    /// - Parameters:
    ///   - onServerRunning: Called with the bound port once the server listens (useful with port 0).
    public static func service(
        api: ControlPlaneAPI, host: String, port: Int, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some Service {
        ControlPlaneService(
            application: Application(
                router: router(api: api),
                configuration: .init(address: .hostname(host, port: port), serverName: "agentjobs"),
                onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
                logger: logger),
            api: api, logger: logger)
    }
}

/// The control plane's HTTP server and the run change feed beside it (``RunChangeFeed``, following
/// the store while the server runs). At a graceful shutdown the feed answers its long polls at once:
/// the server stops taking connections and waits for the requests in progress, which must not
/// include polls waiting up to a minute for a change.
struct ControlPlaneService<App: ApplicationProtocol>: Service {
    let application: App
    let api: ControlPlaneAPI
    let logger: Logger

    func run() async throws {
        let feed = api.runChanges
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { [store = api.store, logger] in await feed.follow(store, logger: logger) }
                try await application.run()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            feed.close()
        }
    }
}
