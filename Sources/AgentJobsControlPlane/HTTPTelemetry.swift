import AgentJobsCore
import AgentJobsTelemetry
import CoreMetrics
import Hummingbird
import Logging

/// Counts and times every HTTP request by method, route and status
/// (`agentjobs_http_requests_total`, `agentjobs_http_request_duration_seconds`); with
/// `AGENTJOBS_LOG_FORMAT=json` it also writes one access log line per request.
///
/// The route label is the matched route's pattern (`/api/v1/runs/{id}`), `NotFound` when none
/// matched: a bounded set, never a path with an id in it. The method label is one of the methods
/// the router knows, `other` for the rest. The access log line carries the path but never the
/// query string or a header (a token never reaches a log).
struct HTTPTelemetry: RouterMiddleware {
    typealias Context = AgentJobsRequestContext
    let accessLog: Logger?

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            record(request, context, status: Int(response.status.code), since: start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError).map { Int($0.status.code) } ?? 500
            record(request, context, status: status, since: start)
            throw error
        }
    }

    private func record(_ request: Request, _ context: Context, status: Int, since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let route = context.endpointPath ?? "NotFound"
        let method = Self.knownMethods.contains(request.method) ? request.method.rawValue : "other"
        Counter(
            label: "agentjobs_http_requests_total",
            dimensions: [("method", method), ("route", route), ("status", String(status))]
        ).increment()
        CoreMetrics.Timer(
            label: "agentjobs_http_request_duration_seconds", dimensions: [("method", method), ("route", route)]
        ).record(elapsed)
        accessLog?.info(
            "http request",
            metadata: [
                "method": "\(method)", "path": "\(request.uri.path)", "route": "\(route)", "status": "\(status)",
                "duration_ms": "\((elapsed.seconds * 1_000_000).rounded() / 1000)",
            ])
    }

    private static let knownMethods: Set<HTTPRequest.Method> = [
        .get, .head, .post, .put, .patch, .delete, .options, .trace, .connect,
    ]
}

/// `GET /metrics`: the process's metrics in the Prometheus text format, without a token (like
/// `/healthz`; no label holds an id, a name or a secret).
public enum MetricsRoute {
    public static func response() async -> Response {
        Response(
            status: .ok, headers: [.contentType: MetricsExposition.contentType],
            body: .init(byteBuffer: .init(bytes: await MetricsExposition.render())))
    }
}
