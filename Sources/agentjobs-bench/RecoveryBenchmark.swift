import AgentJobsCore
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// Issue #15: how long the distributed shape takes to recover from its roles being stopped, with
/// real `agentjobs` processes (`serve`, `aggregate`, `orchestrate`, process driver) on the Kafka
/// broker:
/// - `kill -9` of the aggregator, restarted at once: restart → the first run event applied again
///   (a new run's `succeeded` committed), next to the same trigger → `succeeded` with every role up;
/// - SIGTERM of the orchestrator while runs run: restart → every run re-attached, next to the same
///   orchestrator's start with no run to re-attach.
enum RecoveryBenchmark {
    struct Figures: Codable, Sendable {
        /// Trigger → `succeeded` of a run of an instant agent, every role up (the baseline).
        var triggerToSucceeded: [Double]
        /// Aggregator restarted at once after `kill -9` → a run triggered then is `succeeded`.
        var aggregatorRestartToEventApplied: [Double]
        /// The same with the aggregator down for 8 s before the restart.
        var aggregatorRestartAfter8sToEventApplied: [Double]
        /// Runs running while the orchestrator was stopped.
        var reattachedRuns: Int
        /// Orchestrator start → "orchestrator started", nothing to re-attach (the baseline).
        var orchestratorStart: [Double]
        /// Orchestrator restart (after SIGTERM) → every running run re-attached.
        var orchestratorRestartToReattached: [Double]
        /// One idle orchestrator over 60 s, then with ``footprintRuns`` runs running (issue 18).
        var idleOrchestrator: Footprint?
        var busyOrchestrator: Footprint?
        var skipped: String?
        var failures: [String]
    }

    static let repetitions = 3
    static let reattachedRuns = 20
    static let footprintRuns = 100

    /// A process's resident memory at the end of a window and its share of one core over it.
    struct Footprint: Codable, Sendable {
        var seconds: Double
        var residentMiB: Double
        var coreShare: Double
        /// Of the resident memory: the process's own (`RssAnon`) and pages of mapped files
        /// (`RssFile`: the binary and the shared libraries, clean pages the kernel may drop and
        /// other processes of the same files share).
        var anonymousMiB: Double?
        var fileMiB: Double?

        /// Samples `pid` over `window`.
        static func measure(pid: Int32, over window: Duration) async throws -> Footprint {
            let start = CPUSample.take(pids: [pid])
            let clockStart = ContinuousClock.now
            try await Task.sleep(for: window)
            let end = CPUSample.take(pids: [pid])
            let seconds = (ContinuousClock.now - clockStart).seconds
            let cpu = Double((end.processes[pid] ?? 0) - (start.processes[pid] ?? 0)) / CPUSample.ticksPerSecond
            return Footprint(
                seconds: seconds, residentMiB: statusMiB(pid, "VmRSS") ?? 0, coreShare: cpu / seconds,
                anonymousMiB: statusMiB(pid, "RssAnon"), fileMiB: statusMiB(pid, "RssFile"))
        }

        /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `RssAnon`, `RssFile`), in MiB.
        static func statusMiB(_ pid: Int32, _ field: String) -> Double? {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
                let kib = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
            else { return nil }
            return kib / 1024
        }

        var text: String {
            var parts = "\(formatFixed(residentMiB, 1)) MiB resident"
            if let anonymousMiB, let fileMiB {
                parts += " (\(formatFixed(anonymousMiB, 1)) own, \(formatFixed(fileMiB, 1)) of mapped files)"
            }
            return parts + ", \(formatFixed(coreShare * 100, 2))% of a core over \(formatFixed(seconds, 0)) s"
        }
    }

    static func run(directory: URL, kafka: KafkaTarget?, progress: (String) -> Void) async throws -> Figures {
        var figures = Figures(
            triggerToSucceeded: [], aggregatorRestartToEventApplied: [], aggregatorRestartAfter8sToEventApplied: [],
            reattachedRuns: reattachedRuns,
            orchestratorStart: [], orchestratorRestartToReattached: [], failures: [])
        guard let kafka else {
            figures.skipped = KafkaTarget.skipReason
            return figures
        }
        let cluster = try await RecoveryCluster.start(
            binary: try ServerProcess.locateBinary(), directory: directory, brokers: kafka.description)
        defer { cluster.stopAll() }
        do {
            progress("recovery: serve, aggregate and orchestrate on \(kafka.description)")
            let host = try await cluster.addHost()
            for _ in 0..<repetitions {
                figures.triggerToSucceeded.append(try await cluster.triggerUntilSucceeded(host: host).seconds)
            }
            for down in [Duration.zero, .seconds(8)] {
                for index in 0..<repetitions {
                    progress("recovery: aggregator kill -9, down \(down) \(index + 1)/\(repetitions)")
                    cluster.aggregator?.kill9()
                    try await Task.sleep(for: down)
                    let restart = ContinuousClock.now
                    try await cluster.startAggregator()
                    _ = try await cluster.triggerUntilSucceeded(host: host)
                    let seconds = (ContinuousClock.now - restart).seconds
                    if down == .zero {
                        figures.aggregatorRestartToEventApplied.append(seconds)
                    } else {
                        figures.aggregatorRestartAfter8sToEventApplied.append(seconds)
                    }
                }
            }
            for index in 0..<repetitions {
                progress(
                    "recovery: orchestrator SIGTERM with \(reattachedRuns) runs running \(index + 1)/\(repetitions)")
                let runs = try await cluster.startWaitingRuns(host: host, count: reattachedRuns)
                await cluster.orchestrator?.terminate()
                let restart = ContinuousClock.now
                try await cluster.startOrchestrator(host: host)
                try await cluster.orchestrator!.waitForLog(
                    count: reattachedRuns, of: "re-attached to a running agent", timeout: .seconds(120))
                figures.orchestratorRestartToReattached.append((ContinuousClock.now - restart).seconds)
                try await cluster.finish(runs, host: host)
                // The baseline: the same start with nothing to re-attach.
                await cluster.orchestrator?.terminate()
                let start = ContinuousClock.now
                try await cluster.startOrchestrator(host: host)
                figures.orchestratorStart.append((ContinuousClock.now - start).seconds)
            }
            if let orchestrator = cluster.orchestrator {
                progress("recovery: the orchestrator's footprint, idle for 60 s")
                try await Task.sleep(for: .seconds(5))
                figures.idleOrchestrator = try await Footprint.measure(pid: orchestrator.pid, over: .seconds(60))
                progress("recovery: the orchestrator's footprint with \(footprintRuns) runs running, 30 s")
                let runs = try await cluster.startWaitingRuns(host: host, count: footprintRuns)
                figures.busyOrchestrator = try await Footprint.measure(pid: orchestrator.pid, over: .seconds(30))
                try await cluster.finish(runs, host: host)
            }
        } catch {
            figures.failures.append("recovery: \(error)")
        }
        return figures
    }

    static func text(_ figures: Figures) -> String {
        var lines = ["Recovery: real agentjobs processes on the Kafka broker (issue #15)"]
        func add(_ label: String, _ value: String) { lines.append(reportLine(label, value)) }
        func seconds(_ values: [Double]) -> String {
            values.isEmpty ? "-" : values.map { formatFixed($0, 2) }.joined(separator: ", ") + " s"
        }
        if let skipped = figures.skipped {
            add("skipped", skipped)
            return lines.joined(separator: "\n")
        }
        add("baseline: trigger → succeeded, all up", seconds(figures.triggerToSucceeded))
        add("aggregator kill -9, restart at once → applied", seconds(figures.aggregatorRestartToEventApplied))
        add(
            "aggregator kill -9, 8 s down → event applied", seconds(figures.aggregatorRestartAfter8sToEventApplied))
        add("baseline: orchestrator start, no runs", seconds(figures.orchestratorStart))
        add(
            "orchestrator SIGTERM, restart → \(figures.reattachedRuns) re-attached",
            seconds(figures.orchestratorRestartToReattached))
        if let idle = figures.idleOrchestrator {
            add(
                "one orchestrator, idle",
                idle.text
                    + " (goal ≤ 30 MiB, ≤ 0.5%: \(idle.residentMiB <= 30 && idle.coreShare <= 0.005 ? "met" : "NOT met"))"
            )
        }
        if let busy = figures.busyOrchestrator { add("one orchestrator, \(footprintRuns) runs running", busy.text) }
        for failure in figures.failures { add("FAILED", failure) }
        return lines.joined(separator: "\n")
    }
}

/// `serve`, one `aggregate` and one `orchestrate` as separate processes sharing a SQLite file.
final class RecoveryCluster: @unchecked Sendable {
    let binary: URL
    let directory: URL
    let brokers: String
    private(set) var serve: RoleProcess?
    private(set) var aggregator: RoleProcess?
    private(set) var orchestrator: RoleProcess?
    private(set) var baseURL = ""
    private(set) var token = ""
    private var hostDirectory: URL?
    /// The orchestrators of ``addFleetHost(name:)``, by host id.
    private(set) var fleet: [String: RoleProcess] = [:]
    private var starts = 0

    private init(binary: URL, directory: URL, brokers: String) {
        self.binary = binary
        self.directory = directory
        self.brokers = brokers
    }

    static func start(binary: URL, directory: URL, brokers: String) async throws -> RecoveryCluster {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let cluster = RecoveryCluster(binary: binary, directory: directory, brokers: brokers)
        do {
            let created = try await cluster.runToEnd(["tokens", "create", "--scope", "admin", "--name", "bench"])
            guard let token = created.split(separator: "\n").last.map(String.init), token.hasPrefix("ajt_") else {
                throw BenchFailure("tokens create printed no token: \(created)")
            }
            cluster.token = token
            var environment = cluster.environment
            environment["AGENTJOBS_HTTP_ADDRESS"] = "127.0.0.1:0"
            let serve = try cluster.launch("serve", ["serve"], environment: environment)
            cluster.serve = serve
            let port = try await serve.waitForNumber(after: "address=127.0.0.1:", timeout: .seconds(60))
            cluster.baseURL = "http://127.0.0.1:\(port)/api/v1"
            try await cluster.startAggregator()
        } catch {
            cluster.stopAll()
            throw error
        }
        return cluster
    }

    var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["AGENTJOBS_KAFKA_BROKERS"] = brokers
        environment["AGENTJOBS_DATABASE_URL"] = "sqlite:" + directory.appendingPathComponent("agentjobs.sqlite").path
        environment["AGENTJOBS_DATA_DIR"] = directory.appendingPathComponent("serve").path
        environment["AGENTJOBS_LOG_LEVEL"] = "info"
        // Admin endpoints (/metrics, /readyz) on free ports: nothing else may hold the defaults.
        environment["AGENTJOBS_ADMIN_ADDRESS"] = "127.0.0.1:0"
        environment["AGENTJOBS_AGGREGATOR_GROUP"] = "bench-aggregator-" + directory.lastPathComponent
        environment["AGENTJOBS_HOST_TRACKER_GROUP"] = "bench-host-tracker-" + directory.lastPathComponent
        return environment
    }

    func startAggregator() async throws {
        let process = try launch("aggregate", ["aggregate"], environment: environment)
        aggregator = process
        try await process.waitForLog(count: 1, of: "status aggregator started", timeout: .seconds(60))
    }

    /// Registers a host and starts its orchestrator. - Returns: The host id.
    func addHost() async throws -> String {
        let hostDirectory = directory.appendingPathComponent("host")
        self.hostDirectory = hostDirectory
        let host = try await register(name: "bench-recovery", directory: hostDirectory)
        try await startOrchestrator(host: host)
        return host
    }

    func startOrchestrator(host: String) async throws {
        guard let hostDirectory else { throw BenchFailure("no host registered") }
        let process = try launch("orchestrate", ["orchestrate"], environment: orchestratorEnvironment(hostDirectory))
        orchestrator = process
        try await process.waitForLog(count: 1, of: "orchestrator started", timeout: .seconds(60))
    }

    /// Registers one more host, `name`, with a data directory of its own, and starts its
    /// orchestrator (default settings, process driver) without waiting for it.
    /// - Returns: The host id.
    func addFleetHost(name: String) async throws -> String {
        let hostDirectory = directory.appendingPathComponent("fleet/\(name)")
        let host = try await register(name: name, directory: hostDirectory)
        fleet[host] = try launch(name, ["orchestrate"], environment: orchestratorEnvironment(hostDirectory))
        return host
    }

    /// Registers a host as `agentjobs host register` does, its identity in `directory`.
    /// - Returns: The host id.
    private func register(name: String, directory hostDirectory: URL) async throws -> String {
        let registration = try await call(.POST, "/registration-tokens", body: "{}")
        guard let secret = registration["token"] else { throw BenchFailure("no registration token") }
        let output = try await runToEnd([
            "host", "register", "--control-plane", String(baseURL.dropLast("/api/v1".count)), "--token", secret,
            "--name", name, "--agents", "datahealth", "--data-dir", hostDirectory.path,
        ])
        guard let host = output.split(separator: " ").first(where: { $0.hasPrefix("host_") }).map(String.init) else {
            throw BenchFailure("host register printed no host id: \(output)")
        }
        return host
    }

    /// An orchestrator's settings: the cluster's, its data directory, the process driver.
    private func orchestratorEnvironment(_ hostDirectory: URL) -> [String: String] {
        var environment = self.environment
        environment["AGENTJOBS_DATA_DIR"] = hostDirectory.path
        environment["AGENTJOBS_DRIVER"] = "process"
        environment["AGENTJOBS_AGENTS_DIR"] = FileManager.default.currentDirectoryPath + "/deploy/agents"
        return environment
    }

    /// Triggers a run of an agent that succeeds at once on `host`, waits for `succeeded`, and
    /// reads the run's times. - Returns: queued → started, in milliseconds.
    func queuedToStarted(host: String) async throws -> Double {
        let run = try await trigger(try await createJob(host: host, file: "bench.yaml"))
        try await waitFor(run, status: "succeeded", timeout: .seconds(120))
        let fields = try await call(.GET, "/runs/\(run)")
        let format = ISO8601DateFormatter()
        format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let queued = fields["queuedAt"].flatMap(format.date(from:)),
            let started = fields["startedAt"].flatMap(format.date(from:))
        else { throw BenchFailure("run \(run) has no queuedAt/startedAt: \(fields)") }
        return started.timeIntervalSince(queued) * 1000
    }

    /// Triggers a run of an agent that succeeds at once and waits for `succeeded`.
    /// - Returns: Trigger → `succeeded`.
    func triggerUntilSucceeded(host: String) async throws -> Duration {
        let job = try await createJob(host: host, file: "bench.yaml")
        let start = ContinuousClock.now
        let run = try await trigger(job)
        try await waitFor(run, status: "succeeded", timeout: .seconds(120))
        return ContinuousClock.now - start
    }

    /// Starts `count` runs whose agents wait for a `go` file, and waits until all are running.
    func startWaitingRuns(host: String, count: Int) async throws -> [String] {
        var runs: [String] = []
        for _ in 0..<count { runs.append(try await trigger(try await createJob(host: host, file: "wait-for-go"))) }
        for run in runs { try await waitFor(run, status: "running", timeout: .seconds(120)) }
        return runs
    }

    /// Lets the runs' agents end and waits until all are `succeeded`.
    func finish(_ runs: [String], host: String) async throws {
        guard let hostDirectory else { return }
        for run in runs {
            _ = FileManager.default.createFile(
                atPath: hostDirectory.appendingPathComponent("runs/\(run)/go").path, contents: nil)
        }
        for run in runs { try await waitFor(run, status: "succeeded", timeout: .seconds(120)) }
    }

    private func createJob(host: String, file: String) async throws -> String {
        let body =
            #"{"name":"recovery-\#(UUID().uuidString.prefix(8))","hostId":"\#(host)","agentType":"datahealth","parameters":{"fileName":"\#(file)"}}"#
        guard let id = try await call(.POST, "/jobs", body: body)["id"] else {
            throw BenchFailure("no job id")
        }
        return id
    }

    private func trigger(_ job: String) async throws -> String {
        guard let id = try await call(.POST, "/jobs/\(job)/runs", body: "{}")["id"] else {
            throw BenchFailure("no run id")
        }
        return id
    }

    private func waitFor(_ run: String, status: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            last = (try? await call(.GET, "/runs/\(run)")["status"]) ?? last
            if last == status { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchFailure("run \(run) is \(last), not \(status), after \(timeout)")
    }

    /// Calls the API. - Returns: The string fields of the JSON object it answered.
    private func call(_ method: HTTPMethod, _ path: String, body: String? = nil) async throws -> [String: String] {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        guard (200..<300).contains(response.status.code) else {
            throw BenchFailure("\(method) \(path) answered \(response.status.code): \(String(buffer: bytes))")
        }
        guard case .object(let object) = try JSONParser.parse(Array(bytes.readableBytesView)) else {
            throw BenchFailure("\(method) \(path) answered no JSON object")
        }
        return object.compactMapValues { if case .string(let text) = $0 { text } else { nil } }
    }

    private func launch(_ name: String, _ arguments: [String], environment: [String: String]) throws -> RoleProcess {
        starts += 1
        return try RoleProcess(
            binary: binary, arguments: arguments, environment: environment,
            log: directory.appendingPathComponent("\(name)-\(starts).log"))
    }

    private func runToEnd(_ arguments: [String]) async throws -> String {
        let process = try launch(arguments[0], arguments, environment: environment)
        return try await process.waitForExit(timeout: .seconds(60))
    }

    func stopAll() {
        for process in [orchestrator, aggregator, serve].compactMap({ $0 }) + fleet.values { process.kill9() }
        // Agents of runs still waiting (a failed measurement) must not outlive the benchmark.
        if let hostDirectory {
            _ = try? FileManager.default.contentsOfDirectory(atPath: hostDirectory.path + "/runs").map {
                FileManager.default.createFile(atPath: hostDirectory.path + "/runs/\($0)/go", contents: nil)
            }
        }
    }
}

/// One `agentjobs` process whose output goes to a log file.
final class RoleProcess: Sendable {
    private let process: Process
    let log: URL

    init(binary: URL, arguments: [String], environment: [String: String], log: URL) throws {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.environment = environment
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
        self.process = process
        self.log = log
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
    var pid: Int32 { process.processIdentifier }

    /// Waits until the log holds `text` at least `count` times.
    func waitForLog(count: Int, of text: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if output.components(separatedBy: text).count - 1 >= count { return }
            guard process.isRunning else {
                throw BenchFailure("\(log.lastPathComponent): exited; \(output.suffix(1500))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchFailure("\(log.lastPathComponent): '\(text)' ×\(count) not logged after \(timeout)")
    }

    func waitForNumber(after marker: String, timeout: Duration) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = output
            if let range = text.range(of: marker) {
                let digits = text[range.upperBound...].prefix { $0.isNumber }
                if text[range.upperBound...].count > digits.count, let number = Int(digits) { return number }
            }
            guard process.isRunning else {
                throw BenchFailure("\(log.lastPathComponent): exited; \(output.suffix(1500))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchFailure("\(log.lastPathComponent): no '\(marker)' after \(timeout)")
    }

    /// Waits for the process to end by itself. - Returns: Its output. - Throws: When it fails.
    func waitForExit(timeout: Duration) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        guard !process.isRunning, process.terminationStatus == 0 else {
            kill9()
            throw BenchFailure("\(log.lastPathComponent) failed: \(output.suffix(1500))")
        }
        return output
    }

    /// SIGTERM, then SIGKILL after 30 s.
    func terminate() async {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(30)
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        kill9()
    }

    func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
