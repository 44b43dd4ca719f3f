import Foundation

/// Issue 18's second fleet case: real `agentjobs orchestrate` processes, each a host of its own
/// (registered through the API, with its own credential and data directory, default settings),
/// with one `serve` and one `aggregate` on the Kafka broker. What one more Kafka client per host
/// costs: the broker's connections and CPU, and the orchestrators' CPU and memory while idle,
/// measured once with no orchestrator and once with all of them; then runs triggered over
/// all hosts, one at a time, queued → started, next to the broker's own round trip
/// (``BrokerRoundTrip``) measured in the same run: the goal is queued → started within twice that
/// round trip plus 20 ms.
enum OrchestratorFleetBenchmark {
    /// How long each idle window is measured.
    static let window = Duration.seconds(30)
    /// Runs triggered, spread over the hosts.
    static let runs = 100

    struct Idle: Codable, Sendable {
        var seconds: Double
        /// Established TCP connections to the broker's port.
        var brokerConnections: Int
        /// The broker process's share of one core, when it was found (a process named `tansu`).
        var brokerCoreShare: Double?
        /// The orchestrators' shares of one core, summed.
        var orchestratorsCoreShare: Double
        /// Mean resident memory of one orchestrator, and of it the process's own (`RssAnon`).
        var orchestratorResidentMiB: Double
        var orchestratorAnonymousMiB: Double
    }

    struct Figures: Codable, Sendable {
        var orchestrators: Int
        var skipped: String?
        var startSeconds: Double?
        var without: Idle?
        var with: Idle?
        var queuedToStartedMilliseconds: [Double]
        /// Two raw librdkafka hops, sorted.
        var brokerRoundTripMilliseconds: [Double] = []
        var failures: [String]
    }

    static func run(directory: URL, kafka: KafkaTarget?, orchestrators count: Int, progress: (String) -> Void)
        async throws -> Figures
    {
        var figures = Figures(orchestrators: count, queuedToStartedMilliseconds: [], failures: [])
        guard let kafka else {
            figures.skipped = KafkaTarget.skipReason
            return figures
        }
        guard let port = kafka.brokers.first?.split(separator: ":").last.flatMap({ Int($0) }) else {
            figures.skipped = "cannot read the broker's port from \(kafka.description)"
            return figures
        }
        let cluster = try await RecoveryCluster.start(
            binary: try ServerProcess.locateBinary(), directory: directory, brokers: kafka.description)
        defer { cluster.stopAll() }
        do {
            progress("orchestrators: serve and aggregate on \(kafka.description), idle \(window) without orchestrators")
            figures.without = try await idle(orchestrators: [], brokerPort: port)
            progress("orchestrators: registering \(count) hosts and starting their orchestrators")
            let start = ContinuousClock.now
            var hosts: [String] = []
            for index in 0..<count { hosts.append(try await cluster.addFleetHost(name: "fleet-\(index)")) }
            for process in cluster.fleet.values {
                try await process.waitForLog(count: 1, of: "orchestrator started", timeout: .seconds(120))
            }
            figures.startSeconds = (ContinuousClock.now - start).seconds
            // Each has read its partition's backlog and sent its first heartbeats.
            try await Task.sleep(for: .seconds(10))
            progress("orchestrators: \(count) running, idle \(window)")
            figures.with = try await idle(orchestrators: cluster.fleet.values.map(\.pid), brokerPort: port)
            progress("orchestrators: \(runs) runs triggered one at a time over the \(count) hosts")
            for index in 0..<runs {
                figures.queuedToStartedMilliseconds.append(
                    try await cluster.queuedToStarted(host: hosts[index % hosts.count]))
            }
            figures.queuedToStartedMilliseconds.sort()
            progress(
                "orchestrators: the broker's own round trip, \(BrokerRoundTrip.count) times (two raw librdkafka hops)")
            figures.brokerRoundTripMilliseconds = try await BrokerRoundTrip.measure(kafka)
        } catch {
            figures.failures.append("\(error)")
        }
        return figures
    }

    /// Measures an idle window.
    private static func idle(orchestrators pids: [Int32], brokerPort: Int) async throws -> Idle {
        let broker = brokerProcess()
        let watched = pids + (broker.map { [$0] } ?? [])
        let cpuStart = CPUSample.take(pids: watched)
        let clockStart = ContinuousClock.now
        try await Task.sleep(for: window)
        let cpuEnd = CPUSample.take(pids: watched)
        let seconds = (ContinuousClock.now - clockStart).seconds
        func share(_ pid: Int32) -> Double {
            Double((cpuEnd.processes[pid] ?? 0) - (cpuStart.processes[pid] ?? 0)) / CPUSample.ticksPerSecond / seconds
        }
        let resident = pids.map { RecoveryBenchmark.Footprint.statusMiB($0, "VmRSS") ?? 0 }
        let anonymous = pids.map { RecoveryBenchmark.Footprint.statusMiB($0, "RssAnon") ?? 0 }
        return Idle(
            seconds: seconds, brokerConnections: establishedConnections(toPort: brokerPort),
            brokerCoreShare: broker.map(share), orchestratorsCoreShare: pids.map(share).reduce(0, +),
            orchestratorResidentMiB: resident.isEmpty ? 0 : resident.reduce(0, +) / Double(resident.count),
            orchestratorAnonymousMiB: anonymous.isEmpty ? 0 : anonymous.reduce(0, +) / Double(anonymous.count))
    }

    /// The broker's process: one whose command line names `tansu` (the broker `make bench` starts).
    private static func brokerProcess() -> Int32? {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                let command = procText("/proc/\(entry)/comm")
            else { continue }
            if command.trimmingCharacters(in: .whitespacesAndNewlines) == "tansu" { return pid }
        }
        return nil
    }

    /// Established TCP connections whose local port is `port` (the server's side of each client's
    /// connection), from `/proc/net/tcp` and `/proc/net/tcp6`.
    private static func establishedConnections(toPort port: Int) -> Int {
        let hexPort = String(format: ":%04X", port)
        var count = 0
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = procText(table) ?? ""
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                // sl, local_address, rem_address, st (01: established)
                if fields.count > 3, fields[1].hasSuffix(hexPort), fields[3] == "01" { count += 1 }
            }
        }
        return count
    }

    static func text(_ figures: Figures) -> String {
        var lines = ["Orchestrators: real agentjobs orchestrate processes on the Kafka broker (issue #18)"]
        func add(_ label: String, _ value: String) { lines.append(reportLine(label, value)) }
        if let skipped = figures.skipped {
            add("skipped", skipped)
            return lines.joined(separator: "\n")
        }
        func describe(_ idle: Idle) -> String {
            var text = "\(idle.brokerConnections) broker connections"
            if let broker = idle.brokerCoreShare { text += ", broker \(formatFixed(broker * 100, 1))% of a core" }
            return text
        }
        if let without = figures.without { add("serve + aggregate only, idle", describe(without)) }
        if let start = figures.startSeconds {
            add("\(figures.orchestrators) orchestrators registered and started", "in \(formatFixed(start, 1)) s")
        }
        if let with = figures.with {
            add("with \(figures.orchestrators) orchestrators, idle", describe(with))
            let n = Double(max(1, figures.orchestrators))
            if let without = figures.without {
                let connections = Double(with.brokerConnections - without.brokerConnections) / n
                var perHost = "\(formatFixed(connections, 1)) broker connections"
                if let after = with.brokerCoreShare, let before = without.brokerCoreShare {
                    perHost += ", broker \(formatFixed((after - before) / n * 100, 3))% of a core"
                }
                add("  per orchestrator, on the broker", perHost)
            }
            add(
                "  per orchestrator, itself",
                "\(formatFixed(with.orchestratorsCoreShare / n * 100, 2))% of a core, "
                    + "\(formatFixed(with.orchestratorResidentMiB, 1)) MiB resident "
                    + "(\(formatFixed(with.orchestratorAnonymousMiB, 1)) own)")
        }
        let times = figures.queuedToStartedMilliseconds
        if !times.isEmpty {
            add(
                "queued → started, \(times.count) runs over the hosts",
                "p50 \(formatFixed(SchedulerBenchmark.percentile(times, 0.5), 0)) ms, "
                    + "p99 \(formatFixed(SchedulerBenchmark.percentile(times, 0.99), 0)) ms")
        }
        let roundTrips = figures.brokerRoundTripMilliseconds
        if !roundTrips.isEmpty {
            add(
                "broker round trip, two raw librdkafka hops",
                "p50 \(formatFixed(SchedulerBenchmark.percentile(roundTrips, 0.5), 1)) ms, "
                    + "p99 \(formatFixed(SchedulerBenchmark.percentile(roundTrips, 0.99), 1)) ms "
                    + "(\(roundTrips.count) round trips)")
        }
        if !times.isEmpty, !roundTrips.isEmpty {
            func compare(_ quantile: Double) -> String {
                let measured = SchedulerBenchmark.percentile(times, quantile)
                let bound = 2 * SchedulerBenchmark.percentile(roundTrips, quantile) + 20
                return "p\(Int(quantile * 100)) \(formatFixed(measured, 0)) ms against \(formatFixed(bound, 0)) ms "
                    + (measured <= bound ? "(met)" : "(not met)")
            }
            add("goal: queued → started ≤ 2 × round trip + 20 ms", compare(0.5) + ", " + compare(0.99))
        }
        for failure in figures.failures { add("FAILED", failure) }
        return lines.joined(separator: "\n")
    }
}
