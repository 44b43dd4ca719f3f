import Foundation

/// What metrics and tracing cost a trigger: the HTTP trigger case (socket load generator, against
/// `agentjobs dev`) with metrics and tracing off (`AGENTJOBS_METRICS=off`), as shipped (metrics on,
/// tracing off), and with tracing on (spans exported over OTLP/HTTP to a local receiver that
/// discards them), on fresh databases, the baseline measured first and last so that the run's own
/// noise is printed next to the cost.
enum TelemetryBenchmark {
    struct Variant: Codable, Sendable {
        var name: String
        var triggers: ThroughputFigure
        var serverCPUMillisecondsPerTrigger: Double?
        var runsStored: Int
    }

    struct Figures: Codable, Sendable {
        var variants: [Variant]
        /// |first − last| of the two baseline runs, over their mean: the run's noise.
        var baselineSpread: Double
        /// Triggers/s as shipped, over the baseline's mean, minus 1 (negative: slower).
        var metricsCost: Double
        /// The same with tracing on.
        var tracingCost: Double
        var failures: [String]
    }

    static func run(options: BenchOptions, directory: URL, progress: (String) -> Void) async throws -> Figures {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let binary = try ServerProcess.locateBinary()
        let benchmark = Benchmark(options: options)
        let sink = try OTLPSink.start(directory: directory)
        defer { sink.stop() }
        let off = ["AGENTJOBS_METRICS": "off"]
        let traced = [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(sink.port)",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        ]
        let plan: [(String, [String: String])] = [
            ("metrics and tracing off (1st)", off),
            ("metrics on, tracing off (as shipped)", [:]),
            ("metrics on, tracing on (OTLP/HTTP)", traced),
            ("metrics and tracing off (2nd)", off),
        ]
        var variants: [Variant] = []
        var failures: [String] = []
        for (index, (name, environment)) in plan.enumerated() {
            progress("telemetry: \(name)")
            let http = try await benchmark.measureHTTP(
                directory: directory.appendingPathComponent("variant-\(index)"), binary: binary, generator: .socket,
                environment: environment)
            let triggers = http.triggers.operations
            if !http.triggers.failures.isEmpty {
                failures.append("\(name): triggers failed: \(http.triggers.failures)")
            }
            if http.runsStored < triggers {
                failures.append("\(name): \(http.runsStored) runs stored for \(triggers) measured triggers")
            }
            variants.append(
                Variant(
                    name: name, triggers: http.triggers,
                    serverCPUMillisecondsPerTrigger: http.cpu.serverSeconds.map {
                        $0 * 1000 / Double(max(1, triggers))
                    },
                    runsStored: http.runsStored))
        }
        let baseline = [variants[0].triggers.perSecond, variants[3].triggers.perSecond]
        let mean = baseline.reduce(0, +) / 2
        return Figures(
            variants: variants, baselineSpread: abs(baseline[0] - baseline[1]) / max(mean, 1),
            metricsCost: variants[1].triggers.perSecond / max(mean, 1) - 1,
            tracingCost: variants[2].triggers.perSecond / max(mean, 1) - 1, failures: failures)
    }

    static func text(_ figures: Figures) -> String {
        var lines = ["Telemetry: HTTP triggers against agentjobs dev, socket load generator"]
        for variant in figures.variants {
            let cpu =
                variant.serverCPUMillisecondsPerTrigger.map { ", server CPU \(formatFixed($0, 3)) ms/trigger" } ?? ""
            lines.append(
                reportLine(
                    variant.name,
                    "\(formatRate(variant.triggers.perSecond)) triggers/s, p50 \(formatFixed(variant.triggers.latencyMilliseconds.p50, 2)) ms, p99 \(formatFixed(variant.triggers.latencyMilliseconds.p99, 2)) ms\(cpu)"
                ))
        }
        lines.append(reportLine("noise (the two baseline runs apart)", formatSignedPercent(figures.baselineSpread)))
        lines.append(reportLine("metrics on, tracing off vs baseline", formatSignedPercent(figures.metricsCost)))
        lines.append(reportLine("tracing on vs baseline", formatSignedPercent(figures.tracingCost)))
        for failure in figures.failures { lines.append("  FAILED: \(failure)") }
        return lines.joined(separator: "\n")
    }

    private static func formatSignedPercent(_ fraction: Double) -> String {
        String(format: "%+.1f%%", fraction * 100)
    }
}

/// A local OTLP/HTTP receiver that answers every export with 200 and discards it (Python's
/// http.server): tracing's cost without a collector's.
struct OTLPSink {
    let process: Process
    let port: Int

    static func start(directory: URL) throws -> OTLPSink {
        let script = """
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
            class Handler(BaseHTTPRequestHandler):
                def do_POST(self):
                    self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                def log_message(self, *args):
                    pass
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            print(server.server_address[1], flush=True)
            server.serve_forever()
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var text = ""
        while !text.hasSuffix("\n") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw ServerProcess.Failure(message: "the OTLP receiver (python3) did not start: \(text)")
        }
        return OTLPSink(process: process, port: port)
    }

    /// Kills the receiver: it has nothing to flush, and it may have inherited SIGTERM ignored.
    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
