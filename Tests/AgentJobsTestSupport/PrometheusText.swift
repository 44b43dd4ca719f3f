import Foundation

/// One sample of a scrape: `name{labels} value`, as a real Prometheus parser read it.
public struct MetricSample: Sendable, Hashable, CustomStringConvertible {
    /// The sample's name (`agentjobs_runs_created_total`, `…_bucket`, `…_count`).
    public var name: String
    /// The metric family's type as declared by `# TYPE` (`counter`, `gauge`, `histogram`).
    public var type: String
    public var labels: [String: String]
    public var value: Double

    public var description: String {
        "\(name){\(labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ","))} \(value)"
    }
}

/// Parses Prometheus text exposition with Python's `prometheus_client` (``RequiredService/prometheusClient``),
/// so what is checked is what a Prometheus server would accept, not what our own parser believes.
public enum PrometheusText {
    /// The samples of `text`.
    /// - Throws: When the parser refuses the text (the message is the parser's), or is missing.
    public static func parse(_ text: String) async throws -> [MetricSample] {
        let libraries = try RequiredService.prometheusClient.require()
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = []
            for family in text_string_to_metric_families(sys.stdin.read()):
                for sample in family.samples:
                    out.append({"name": sample.name, "type": family.type, "labels": sample.labels, "value": sample.value})
            json.dump(out, sys.stdout)
            """
        let process = SpawnedProcess()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = libraries
        process.environment = environment
        // The parser reads all of its input before it writes: a file as its input, and its output
        // collected as it comes (no thread of the test process blocked while it runs).
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-scrape-\(UUID())")
        try Data(text.utf8).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }
        let inputHandle = try FileHandle(forReadingFrom: input)
        defer { try? inputHandle.close() }
        let output = CollectedPipe()
        let errors = CollectedPipe()
        process.standardInput = inputHandle
        process.standardOutput = output.pipe
        process.standardError = errors.pipe
        try process.run()
        let status = await process.exit()
        let data = await output.end()
        let failure = await errors.end()
        guard status == 0 else {
            throw PrometheusParseError(
                "prometheus_client refused the scrape: \(String(decoding: failure, as: UTF8.self))")
        }
        guard let entries = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw PrometheusParseError("the parser printed no list")
        }
        return entries.compactMap { entry in
            guard let name = entry["name"] as? String, let type = entry["type"] as? String,
                let labels = entry["labels"] as? [String: String], let value = entry["value"] as? Double
            else { return nil }
            return MetricSample(name: name, type: type, labels: labels, value: value)
        }
    }
}

extension Array where Element == MetricSample {
    /// The value of the sample `name` whose labels include `labels`; nil when there is none.
    /// Several matches are summed (e.g. a counter over the labels not given).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matches = filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }
        return matches.isEmpty ? nil : matches.reduce(0) { $0 + $1.value }
    }
}

/// The Prometheus text could not be parsed.
public struct PrometheusParseError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
