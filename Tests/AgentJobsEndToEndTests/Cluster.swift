import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

/// Selection of the end-to-end tier: separate `agentjobs` processes against a real
/// Kafka-protocol broker (`AGENTJOBS_TEST_KAFKA_BROKERS`). Skipped with a reason locally without a
/// broker; in CI (`CI=true`) a missing broker fails every test.
enum EndToEnd {
    static let environment = ProcessInfo.processInfo.environment
    static var shouldRun: Bool { RequiredService.kafkaBroker.shouldRun }
    static var skipReason: Comment { RequiredService.kafkaBroker.skipReason }

    /// The built `agentjobs` binary: `AGENTJOBS_BIN`, or next to the test bundle.
    static var binary: String {
        if let path = environment["AGENTJOBS_BIN"] { return path }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
            "agentjobs"
        ).path
    }

    /// The source tree.
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// The sample agents (busybox shell scripts) in the source tree.
    static var agentsDirectory: URL { repository.appendingPathComponent("deploy/agents") }
}

/// A distributed AgentJobs on this machine: `serve`, `aggregate` replicas and one `orchestrate` per
/// host, each a separate process, sharing one database (a SQLite file, or a PostgreSQL database of
/// its own on the test server) and the test broker. Everything binds to 127.0.0.1 and is stopped
/// by ``stop()``.
final class Cluster: @unchecked Sendable {
    /// Where the roles keep their state.
    enum Database {
        case sqlite
        /// A database of its own on the shared test server.
        case postgres
        /// A database of its own on the server with this (superuser) URL.
        case postgresServer(String)

        /// `AGENTJOBS_TEST_CLUSTER_DATABASE=postgres` runs the tests that do not choose on PostgreSQL
        /// (`make test` runs the distributed tests a second time so); SQLite otherwise.
        static var chosen: Database {
            EndToEnd.environment["AGENTJOBS_TEST_CLUSTER_DATABASE"] == "postgres" ? .postgres : .sqlite
        }
    }

    let directory: URL
    let brokers: String
    /// `AGENTJOBS_DATABASE_URL` of every role.
    private var databaseURL = ""
    /// The `serve` replicas; the first is ``serve``.
    private(set) var serves: [ChildProcess?] = []
    var serve: ChildProcess? { serves.first ?? nil }
    /// One client per `serve` replica (same token); ``api`` talks to the first.
    private(set) var apis: [APIClient] = []
    private var ports: [Int] = []
    private(set) var aggregators: [ChildProcess] = []
    private(set) var orchestrators: [String: ChildProcess] = [:]
    private(set) var hostDirectories: [String: URL] = [:]
    private(set) var api: APIClient!
    private(set) var baseURL = ""
    let offlineGraceSeconds: Int
    /// `AGENTJOBS_HOST_LOST_AFTER_SECONDS`; nil: the user's default.
    let hostLostAfterSeconds: Int?
    /// Orchestrators with the user's stop grace (10 s) and heartbeat (5 s), instead of the 1 s that
    /// keeps the other tests short.
    let userDefaults: Bool
    /// `AGENTJOBS_LOG_FORMAT` of every role; nil: the default (plain).
    let logFormat: String?
    /// More settings for every role (e.g. `OTEL_*`).
    let extraEnvironment: [String: String]

    private init(
        directory: URL, brokers: String, offlineGraceSeconds: Int, hostLostAfterSeconds: Int?, userDefaults: Bool,
        logFormat: String?, extraEnvironment: [String: String]
    ) {
        self.userDefaults = userDefaults
        self.logFormat = logFormat
        self.extraEnvironment = extraEnvironment
        self.directory = directory
        self.brokers = brokers
        self.offlineGraceSeconds = offlineGraceSeconds
        self.hostLostAfterSeconds = hostLostAfterSeconds
    }

    /// Runs `body` against a fresh cluster with `serves` control-plane replicas and `aggregators`
    /// aggregator replicas, stopping everything afterwards.
    /// - Parameter brokers: A broker of the test's own (one it stops); nil: the shared test broker.
    static func run(
        offlineGraceSeconds: Int = 30, hostLostAfterSeconds: Int? = nil, serves: Int = 1, aggregators: Int = 1,
        userDefaults: Bool = false, database: Database = .chosen, logFormat: String? = nil, brokers: String? = nil,
        environment: [String: String] = [:], _ body: (Cluster) async throws -> Void
    ) async throws {
        // Locally without a broker the suite is not enabled; in CI this fails the test.
        let brokers = try brokers ?? RequiredService.kafkaBroker.require()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-e2e-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let cluster = Cluster(
            directory: directory, brokers: brokers, offlineGraceSeconds: offlineGraceSeconds,
            hostLostAfterSeconds: hostLostAfterSeconds, userDefaults: userDefaults, logFormat: logFormat,
            extraEnvironment: environment)
        var dropDatabase: (@Sendable () async -> Void)?
        switch database {
        case .sqlite:
            cluster.databaseURL = "sqlite:" + directory.appendingPathComponent("agentjobs.sqlite").path
        case .postgres, .postgresServer:
            var server: String?
            if case .postgresServer(let url) = database { server = url }
            let fresh = try await TestPostgres.freshDatabase(on: server)
            cluster.databaseURL = fresh.url
            dropDatabase = fresh.drop
        }
        do {
            try await cluster.startServe(replicas: serves)
            let aggregator = try await cluster.startAggregator()
            // Both groups own their partitions before the test starts (on Tansu, a new group's first
            // join takes up to half the session timeout).
            try await Self.waitForAssignment(of: aggregator, topics: [Topic.runEvents, Topic.hostEvents])
            for _ in 1..<max(1, aggregators) { try await cluster.startAggregator() }
            try await body(cluster)
        } catch {
            await cluster.stop(printingLogs: true)
            await dropDatabase?()
            throw error
        }
        await cluster.stop(printingLogs: false)
        await dropDatabase?()
    }

    var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["AGENTJOBS_KAFKA_BROKERS"] = brokers
        environment["AGENTJOBS_DATABASE_URL"] = databaseURL
        environment["AGENTJOBS_DATA_DIR"] = directory.appendingPathComponent("serve").path
        environment["AGENTJOBS_LOG_LEVEL"] = "info"
        environment["AGENTJOBS_HOST_OFFLINE_GRACE_SECONDS"] = String(offlineGraceSeconds)
        environment["AGENTJOBS_HOST_LOST_AFTER_SECONDS"] = hostLostAfterSeconds.map(String.init)
        // Groups of this cluster only: the test broker (Tansu) is slow to hand an existing group's
        // partitions to new members, and other clusters' events are not ours anyway.
        environment["AGENTJOBS_AGGREGATOR_GROUP"] = "aggregator-" + directory.lastPathComponent
        environment["AGENTJOBS_HOST_TRACKER_GROUP"] = "host-tracker-" + directory.lastPathComponent
        // Group session timeouts are the defaults a user gets (AGENTJOBS_GROUP_SESSION_TIMEOUT_SECONDS).
        // Admin endpoints on free ports: several aggregators and orchestrators share this machine.
        environment["AGENTJOBS_ADMIN_ADDRESS"] = "127.0.0.1:0"
        environment["AGENTJOBS_LOG_FORMAT"] = logFormat
        environment.merge(extraEnvironment) { $1 }
        return environment
    }

    private func startServe(replicas: Int) async throws {
        let created = try await Self.runToEnd(
            ["tokens", "create", "--scope", "admin", "--name", "e2e"], environment: environment)
        guard let token = created.split(separator: "\n").last.map(String.init), token.hasPrefix("ajt_") else {
            throw TestAPIError("tokens create printed no token: \(created)")
        }
        for index in 0..<max(1, replicas) {
            serves.append(nil)
            let port = try await launchServe(index, port: 0)
            ports.append(port)
            apis.append(APIClient(baseURL: "http://127.0.0.1:\(port)", token: token))
        }
        baseURL = "http://127.0.0.1:\(ports[0])"
        api = apis[0]
    }

    /// Starts `serve` replica `index` on `port` (0: any free port) and returns the port it listens on.
    private func launchServe(_ index: Int, port: Int) async throws -> Int {
        var environment = self.environment
        environment["AGENTJOBS_HTTP_ADDRESS"] = "127.0.0.1:\(port)"
        let serve = try ChildProcess(
            name: index == 0 ? "agentjobs serve" : "agentjobs serve #\(index + 1)", executable: EndToEnd.binary,
            arguments: ["serve"], environment: environment)
        serves[index] = serve
        return try await serve.waitForOutput(timeout: .seconds(60)) {
            listeningPort(in: $0, line: "control plane listening")
        }
    }

    /// Replaces a stopped or killed `serve` replica with a new one on the same address.
    func restartServe(_ index: Int = 0) async throws {
        await serves[index]?.stop()
        _ = try await launchServe(index, port: ports[index])
    }

    /// Replaces a stopped or killed aggregator replica with a new one.
    func restartAggregator(_ index: Int) async throws {
        await aggregators[index].stop()
        let process = try ChildProcess(
            name: "agentjobs aggregate #\(index + 1)", executable: EndToEnd.binary, arguments: ["aggregate"],
            environment: environment)
        aggregators[index] = process
        _ = try await process.waitForOutput(timeout: .seconds(60)) {
            $0.contains("status aggregator started") ? true : nil
        }
    }

    /// Waits until `aggregator` logged an assignment of a partition of each of `topics`.
    static func waitForAssignment(
        of aggregator: ChildProcess, topics: [String], timeout: Duration = .seconds(60)
    ) async throws {
        _ = try await aggregator.waitForOutput(timeout: timeout) { output in
            let assigned = output.split(separator: "\n").filter { $0.contains("partitions assigned") }
            return topics.allSatisfy { topic in assigned.contains { $0.contains(topic + "[") } } ? true : nil
        }
    }

    /// Starts one more aggregator replica.
    @discardableResult
    func startAggregator() async throws -> ChildProcess {
        let process = try ChildProcess(
            name: "agentjobs aggregate #\(aggregators.count + 1)", executable: EndToEnd.binary,
            arguments: ["aggregate"],
            environment: environment)
        aggregators.append(process)
        _ = try await process.waitForOutput(timeout: .seconds(60)) {
            $0.contains("status aggregator started") ? true : nil
        }
        return process
    }

    /// Registers a host through `agentjobs host register` and starts its orchestrator.
    /// - Returns: The host id.
    func addHost(
        name: String, agents: [String] = ["lineage-plus", "external-monitors", "datahealth"],
        driver: String = "process",
        startOrchestrator: Bool = true
    ) async throws -> String {
        let registration = try await api.call(.POST, "/registration-tokens", body: "{}", expect: 201)
        guard let secret = registration["token"]?.string else {
            throw TestAPIError("no registration token in \(registration)")
        }
        let hostDirectory = directory.appendingPathComponent("host-\(name)")
        // The token from the environment, as the docs show it: an argument would be visible in ps.
        let output = try await Self.runToEnd(
            [
                "host", "register", "--control-plane", baseURL, "--name", name, "--agents",
                agents.joined(separator: ","), "--data-dir", hostDirectory.path,
            ], environment: environment.merging(["AGENTJOBS_REGISTRATION_TOKEN": secret]) { $1 })
        guard let id = output.split(separator: " ").first(where: { $0.hasPrefix("host_") }).map(String.init) else {
            throw TestAPIError("host register printed no host id: \(output)")
        }
        hostDirectories[id] = hostDirectory
        if startOrchestrator { try await self.startOrchestrator(hostId: id, driver: driver) }
        return id
    }

    /// (Re)starts the orchestrator of a registered host.
    func startOrchestrator(hostId: String, driver: String = "process") async throws {
        guard let hostDirectory = hostDirectories[hostId] else { throw TestAPIError("unknown host \(hostId)") }
        var environment = self.environment
        environment["AGENTJOBS_DATA_DIR"] = hostDirectory.path
        environment["AGENTJOBS_DRIVER"] = driver
        if driver == "docker" {
            // A Docker host without the test engine's socket would talk to whatever engine is
            // installed, or fail later with a less clear error: in CI this fails the test here.
            environment["AGENTJOBS_DOCKER_SOCKET"] = try RequiredService.dockerEngine.require()
            environment["AGENTJOBS_DOCKER_NETWORK"] = "none"
        }
        environment["AGENTJOBS_AGENTS_DIR"] = EndToEnd.agentsDirectory.path
        if !userDefaults {
            environment["AGENTJOBS_STOP_GRACE_SECONDS"] = "1"
            environment["AGENTJOBS_HEARTBEAT_SECONDS"] = "1"
        }
        let process = try ChildProcess(
            name: "agentjobs orchestrate \(hostId)", executable: EndToEnd.binary, arguments: ["orchestrate"],
            environment: environment)
        orchestrators[hostId] = process
        _ = try await process.waitForOutput(timeout: .seconds(60)) { $0.contains("orchestrator started") ? true : nil }
    }

    /// Creates a job on `hostId` and returns its id.
    func createJob(
        hostId: String, agentType: String = "datahealth", parameters: String = #"{"fileName":"checks.yaml"}"#,
        timeoutSeconds: Int? = nil, queueTimeoutSeconds: Int? = nil
    ) async throws -> String {
        var body =
            #"{"name":"job-\#(UUID().uuidString.prefix(6))","hostId":"\#(hostId)","agentType":"\#(agentType)","parameters":\#(parameters)"#
        if let timeoutSeconds { body += #","timeoutSeconds":\#(timeoutSeconds)"# }
        if let queueTimeoutSeconds { body += #","queueTimeoutSeconds":\#(queueTimeoutSeconds)"# }
        body += "}"
        let job = try await api.call(.POST, "/jobs", body: body, expect: 201)
        guard let id = job["id"]?.string else { throw TestAPIError("no job id in \(job)") }
        return id
    }

    /// Triggers a job's run through `serve` replica `preferred`, or another one while it is down.
    /// A trigger whose answer was lost (the replica was killed or restarted meanwhile) may have
    /// started the run: the job's runs are looked up before the trigger is sent again (a job has at
    /// most one active run), so the job is never run twice.
    func triggerOnce(_ job: String, preferring preferred: Int = 0, timeout: Duration = .seconds(180)) async throws
        -> String
    {
        let deadline = ContinuousClock.now + timeout
        var attempt = 0
        while ContinuousClock.now < deadline {
            let api = apis[(preferred + attempt) % apis.count]
            attempt += 1
            if attempt > 1,
                let existing = try? await api.call(.GET, "/runs?jobId=\(job)", expect: 200),
                let id = existing["runs"]?.array.first?["id"]?.string
            {
                return id
            }
            if let run = try? await api.call(.POST, "/jobs/\(job)/runs", body: "{}"), let id = run["id"]?.string {
                return id
            }
            try await Task.sleep(for: .milliseconds(300))
        }
        throw TestAPIError("job \(job) could not be triggered within \(timeout)")
    }

    /// Polls a run until `done` holds, failing after `timeout` with the run as last seen.
    @discardableResult
    func waitForRun(_ runId: String, timeout: Duration = .seconds(60), until done: (JSONValue) -> Bool) async throws
        -> JSONValue
    {
        let deadline = ContinuousClock.now + timeout
        var last = JSONValue.null
        while ContinuousClock.now < deadline {
            last = try await api.call(.GET, "/runs/\(runId)", expect: 200)
            if done(last) { return last }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestAPIError("run \(runId) did not reach the expected state within \(timeout); last seen: \(last)")
    }

    /// Waits until a run has the given status.
    @discardableResult
    func waitForStatus(_ runId: String, _ status: String, timeout: Duration = .seconds(60)) async throws -> JSONValue {
        try await waitForRun(runId, timeout: timeout) { $0["status"]?.string == status }
    }

    /// Waits until the API shows a host with the given status.
    func waitForHost(_ hostId: String, status: String, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = JSONValue.null
        while ContinuousClock.now < deadline {
            last = try await api.call(.GET, "/hosts/\(hostId)", expect: 200)
            if last["status"]?.string == status { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestAPIError("host \(hostId) is not \(status) after \(timeout): \(last)")
    }

    /// The port of `process`'s admin endpoint (`/healthz`, `/readyz`, `/metrics`), from its log.
    static func adminPort(of process: ChildProcess) async throws -> Int {
        try await process.waitForOutput(timeout: .seconds(30)) {
            listeningPort(in: $0, line: "admin endpoint listening")
        }
    }

    /// Stops every process and removes the directory. Each role must exit within 20 s of SIGTERM, as
    /// under a service manager; one that does not is a failure (and is then killed).
    func stop(printingLogs: Bool) async {
        for process in Array(orchestrators.values) + aggregators + serves.compactMap({ $0 })
        where !(await process.stop(grace: .seconds(20))) {
            Issue.record(
                "\(process.name) did not stop within 20 s of SIGTERM; output:\n\(process.capturedOutput.suffix(4000))")
        }
        if printingLogs {
            for process in serves.compactMap({ $0 }) + aggregators + Array(orchestrators.values) {
                print("----- \(process.name) -----\n\(process.capturedOutput.suffix(6000))")
            }
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs an `agentjobs` command to completion and returns its output.
    /// - Throws: ``TestAPIError`` when it exits non-zero.
    static func runToEnd(_ arguments: [String], environment: [String: String]) async throws -> String {
        let process = try ChildProcess(
            name: "agentjobs \(arguments.prefix(2).joined(separator: " "))", executable: EndToEnd.binary,
            arguments: arguments,
            environment: environment)
        let status = try await process.waitForExit()
        guard status == 0 else { throw TestAPIError("\(process.name) exited \(status): \(process.capturedOutput)") }
        return process.capturedOutput
    }
}
