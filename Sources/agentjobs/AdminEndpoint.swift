import AgentJobsControlPlane
import Foundation
import Hummingbird
import Logging

/// The admin listener of `aggregate` and `orchestrate`, which have no API: `GET /healthz` (the
/// process is up), `GET /readyz` (200, or 503 naming what fails) and `GET /metrics` (Prometheus)
/// on `AGENTJOBS_ADMIN_ADDRESS`, loopback by default. No token: put it on an address only the
/// monitoring network reaches.
enum AdminEndpoint {
    /// The listener as a service of the role's group.
    /// - Parameter defaultAddress: The role's default (`127.0.0.1:9181` for aggregate,
    ///   `127.0.0.1:9182` for orchestrate, so both fit on one machine).
    static func application(
        _ settings: Settings, defaultAddress: String, readiness: Readiness, logger: Logger
    ) throws -> some ApplicationProtocol {
        let (host, port) = try settings.address("AGENTJOBS_ADMIN_ADDRESS", default: defaultAddress)
        let router = Router()
        router.get("/healthz") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: .init(string: #"{"status":"ok"}"#)))
        }
        router.get("/readyz") { _, _ in try await readiness.response() }
        router.get("/metrics") { _, _ in await MetricsRoute.response() }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "agentjobs-admin"),
            onServerRunning: { channel in
                logger.info(
                    "admin endpoint listening (/healthz, /readyz, /metrics)",
                    metadata: ["address": "\(host):\(channel.localAddress?.port ?? port)"])
            },
            logger: logger)
    }
}
