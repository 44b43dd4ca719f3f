import AgentJobsStore
import AgentJobsTelemetry
import Hummingbird
import Logging
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

    /// An HTTP application serving the API on `host:port`.
    /// - Parameters:
    ///   - onServerRunning: Called with the bound port once the server listens (useful with port 0).
    public static func application(
        api: ControlPlaneAPI, host: String, port: Int, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            router: router(api: api),
            configuration: .init(address: .hostname(host, port: port), serverName: "agentjobs"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
