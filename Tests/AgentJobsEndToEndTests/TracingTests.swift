import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

/// A run's path as one trace: `serve`, `orchestrate` and `aggregate`, separate processes talking
/// through the real broker, export spans over OTLP to a receiver of the test's own.
@Suite(
    "Tracing end to end", .serialized, .timeLimit(.minutes(5)),
    .enabled(if: EndToEnd.shouldRun, EndToEnd.skipReason))
struct TracingTests {
    @Test(
        "a run's spans share one trace id from the API request through the dispatch, the launch and the aggregator's apply"
    )
    func oneTracePerRun() async throws {
        let receiver = try OTLPReceiver()
        do {
            try await Self.oneTracePerRun(receiver)
        } catch {
            await receiver.stop()
            throw error
        }
        await receiver.stop()
    }

    static func oneTracePerRun(_ receiver: OTLPReceiver) async throws {
        let port = try await receiver.port()
        let tracing = [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(port)",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            // Export every 200 ms rather than every 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        ]
        try await Cluster.run(environment: tracing) { cluster in
            let host = try await cluster.addHost(name: "traced")
            let job = try await cluster.createJob(hostId: host)
            let run = try await cluster.api.trigger(job)
            _ = try await cluster.waitForStatus(run, "succeeded")

            // The request's server span, the launch on the host and the aggregator's applies: one trace.
            let spans = try await Self.completeTrace(from: receiver)
            let request = try #require(spans.first { $0.name == "/api/v1/jobs/{id}/runs" })
            let trace = spans.filter { $0.traceId == request.traceId }
            #expect(request.service == "agentjobs-serve")
            #expect(trace.filter { $0.name == "agentjobs.launch_agent" }.map(\.service) == ["agentjobs-orchestrate"])
            let applies = trace.filter { $0.name == "agentjobs.apply_run_event" }
            #expect(Set(applies.map(\.service)) == ["agentjobs-aggregate"])
            // accepted, started, succeeded: each applied under the run's trace.
            #expect(applies.count >= 3, "\(applies.count) applies in the trace")
            #expect(trace.filter { $0.name != request.name }.allSatisfy { $0.parentSpanId == request.spanId })
        }
    }
}

extension TracingTests {
    /// The spans received once one trace holds the request, a launch and an apply (30 s at most).
    static func completeTrace(from receiver: OTLPReceiver) async throws -> [OTLPReceiver.Span] {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let spans = try receiver.spans()
            if let request = spans.first(where: { $0.name == "/api/v1/jobs/{id}/runs" }) {
                let trace = spans.filter { $0.traceId == request.traceId }
                if trace.contains(where: { $0.name == "agentjobs.launch_agent" })
                    && trace.contains(where: { $0.name == "agentjobs.apply_run_event" })
                {
                    return spans
                }
            }
            guard ContinuousClock.now < deadline else {
                throw TimeoutError(what: "spans of serve, orchestrate and aggregate in one trace: \(spans.map(\.name))")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}

/// An OTLP/HTTP (JSON) receiver: a small Python HTTP server that appends every export it is sent to
/// a file, one request body per line.
final class OTLPReceiver: Sendable {
    struct Span: Sendable {
        var service: String
        var name: String
        var traceId: String
        var spanId: String
        var parentSpanId: String
    }

    let directory: URL
    let process: ChildProcess

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-otlp-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let script = """
            import os, sys
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
            path = os.path.join(sys.argv[1], "exports.jsonl")
            class Handler(BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    with open(path, "ab") as f:
                        f.write(body.replace(b"\\n", b" ") + b"\\n")
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                def log_message(self, *args):
                    pass
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            print("OTLP receiver listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
            server.serve_forever()
            """
        process = try ChildProcess(
            name: "OTLP receiver", executable: "/usr/bin/env", arguments: ["python3", "-c", script, directory.path])
    }

    func port() async throws -> Int {
        try await process.waitForOutput(timeout: .seconds(20)) { listeningPort(in: $0, line: "OTLP receiver") }
    }

    /// Every span exported so far.
    func spans() throws -> [Span] {
        let file = directory.appendingPathComponent("exports.jsonl")
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return [] }
        var spans: [Span] = []
        for line in text.split(separator: "\n") {
            guard let export = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                continue
            }
            for resourceSpans in export["resourceSpans"] as? [[String: Any]] ?? [] {
                let attributes = (resourceSpans["resource"] as? [String: Any])?["attributes"] as? [[String: Any]] ?? []
                let service =
                    attributes.first { $0["key"] as? String == "service.name" }
                    .flatMap { ($0["value"] as? [String: Any])?["stringValue"] as? String } ?? ""
                for scope in resourceSpans["scopeSpans"] as? [[String: Any]] ?? [] {
                    for span in scope["spans"] as? [[String: Any]] ?? [] {
                        spans.append(
                            Span(
                                service: service, name: span["name"] as? String ?? "",
                                traceId: span["traceId"] as? String ?? "", spanId: span["spanId"] as? String ?? "",
                                parentSpanId: span["parentSpanId"] as? String ?? ""))
                    }
                }
            }
        }
        return spans
    }

    func stop() async {
        _ = await process.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
