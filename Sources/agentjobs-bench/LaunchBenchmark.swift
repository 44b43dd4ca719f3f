import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsOrchestrator
import AgentJobsStore
import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Issue #4: how fast a host starts agents. Three levels, measured in the same run on the same
/// no-op script: a bare `posix_spawn` of it; `ProcessDriver.launch` (the driver alone); and a
/// `HostWorker` handed a burst of signed dispatches on the embedded log (journal, events, driver).
enum LaunchBenchmark {
    static let agentStarted = "agent started"
    static let dockerVariable = "AGENTJOBS_BENCH_DOCKER_SOCKET"

    struct Figures: Codable, Sendable {
        var agents: Int
        var agent: String
        /// `posix_spawn` of the script, one after the other: the call, and the call to the exit.
        var bareSpawn: RateFigure
        var bareSpawnCall: LatencyFigure
        var bareSpawnToExit: LatencyFigure
        /// `ProcessDriver.launch`, one after the other (the agents then exit on their own).
        var driverLaunch: RateFigure
        var driverLaunchCall: LatencyFigure
        /// A burst of dispatches to one `HostWorker`: first dispatch appended → last agent started.
        var worker: RateFigure
        /// Dispatch appended → "agent started" (journaled, `started` published), in the burst.
        var workerDispatchToStarted: LatencyFigure
        var docker: String
        var failures: [String]
    }

    static func run(directory: URL, agents: Int, progress: (String) -> Void) async throws -> Figures {
        let agent = try NoopAgent.write(in: directory.appendingPathComponent("agents"))
        var failures: [String] = []

        progress("launch: bare posix_spawn of the script, \(agents) times")
        let (bare, bareSeconds, bareCPU) = try await measured {
            try await offPool { try bareSpawns(agent.path, count: agents) }
        }

        progress("launch: ProcessDriver.launch, \(agents) times")
        let runsDirectory = directory.appendingPathComponent("driver/runs")
        let driver = NoOpAgent.driver(runsDirectory)
        var handles: [AgentHandle] = []
        var calls: [Double] = []
        let (_, driverSeconds, driverCPU) = try await measured {
            for index in 0..<agents {
                let runId = "run_launch\(index)"
                let logDirectory = runsDirectory.appendingPathComponent(runId)
                try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
                let launch = AgentLaunch(
                    runId: runId, jobId: "job_launch", hostId: "host_launch", dispatchEpoch: 1, agentType: .datahealth,
                    program: agent.path, arguments: ["--file", "bench.csv"], logDirectory: logDirectory.path)
                let start = ContinuousClock.now
                handles.append(try await driver.launch(launch))
                calls.append((ContinuousClock.now - start).milliseconds)
            }
        }
        for handle in handles {
            let exit = try await driver.wait(handle)
            try await driver.release(handle)
            if exit.exitCode != 0 {
                failures.append(
                    "ProcessDriver: agent \(handle.runId) exited with \(exit.exitCode.map(String.init) ?? "?")")
                break
            }
        }

        progress("launch: \(agents) dispatches in one burst to a HostWorker (embedded log)")
        let (worker, dispatchToStarted) = try await workerBurst(
            directory: directory.appendingPathComponent("worker"), agents: agents, agent: agent, failures: &failures)

        let docker: String
        if let socket = ProcessInfo.processInfo.environment[dockerVariable], !socket.isEmpty {
            progress("launch: Docker — bare `docker run` and DockerDriver, \(min(agents, 20)) containers each")
            docker = try await dockerCase(
                socket: socket, count: min(agents, 20), directory: directory.appendingPathComponent("docker"),
                failures: &failures)
        } else {
            docker =
                "skipped: \(dockerVariable) is not set (make bench starts a private Docker daemon when docker.io is installed)"
        }
        return Figures(
            agents: agents, agent: "\(agent.path) (#!/bin/sh, exit 0)",
            bareSpawn: RateFigure(count: agents, seconds: bareSeconds, cpu: bareCPU),
            bareSpawnCall: LatencyFigure(milliseconds: bare.calls),
            bareSpawnToExit: LatencyFigure(milliseconds: bare.exits),
            driverLaunch: RateFigure(count: agents, seconds: driverSeconds, cpu: driverCPU),
            driverLaunchCall: LatencyFigure(milliseconds: calls), worker: worker,
            workerDispatchToStarted: dispatchToStarted, docker: docker, failures: failures)
    }

    /// `posix_spawn` + `waitpid` of the script, `count` times in turn.
    static func bareSpawns(_ path: String, count: Int) throws -> (calls: [Double], exits: [Double]) {
        var calls: [Double] = []
        var exits: [Double] = []
        let argv = [strdup(path), strdup("--file"), strdup("bench.csv"), nil]
        defer { for pointer in argv { free(pointer) } }
        for _ in 0..<count {
            let start = ContinuousClock.now
            var pid: pid_t = 0
            let result = posix_spawn(&pid, path, nil, nil, argv, environ)
            guard result == 0 else { throw BenchFailure("posix_spawn \(path): \(String(cString: strerror(result)))") }
            calls.append((ContinuousClock.now - start).milliseconds)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            exits.append((ContinuousClock.now - start).milliseconds)
        }
        return (calls, exits)
    }

    /// One host, `agents` jobs triggered through the store; their outbox rows are signed and
    /// appended to the embedded log in one batch (the clock starts there), and the worker starts
    /// them all.
    private static func workerBurst(
        directory: URL, agents: Int, agent: URL, failures: inout [String]
    ) async throws -> (RateFigure, LatencyFigure) {
        let fixture = try await PipelineFixture.prepare(
            directory: directory, hostCount: 1, jobCount: agents, trigger: true)
        let host = fixture.hosts[0]
        let stamps = LogStamps(watching: [agentStarted])
        let signingKey = DispatchSigningKey()
        let commands = NoOpAgent.catalog(agent.path)
        let (rate, latency, launched) = try await withStore(fixture.databasePath) { store in
            let log = SQLiteMessageLog(sharing: store.database)
            let producer = SQLiteMessageProducer(log: log)
            let partition = try await log.partition(forKey: Array(host.id.utf8), inTopic: Topic.dispatch)
            let consumer = SQLiteMessageConsumer(
                log: log,
                configuration: .init(
                    subscription: .assignment(
                        groupID: "agentjobs-host-\(host.id)",
                        partitions: [TopicPartition(topic: Topic.dispatch, partition: partition)],
                        keyFilter: Array(host.id.utf8))),
                logger: quietLogger("bench.consumer"))
            let journal = try RunJournal(dataDirectory: directory.appendingPathComponent("host"))
            let worker = try HostWorker(
                identity: HostIdentity(
                    controlPlaneURL: "in-process", hostId: host.id, name: host.id, credential: host.credential.value,
                    signingPublicKey: signingKey.verifier.base64, managedAgents: [.datahealth]),
                consumer: consumer, producer: producer, driver: NoOpAgent.driver(journal.runsDirectory),
                journal: journal,
                makeLaunch: { dispatch, runDirectory in try NoOpAgent.launch(commands, dispatch, runDirectory) },
                summarize: { dispatch, runDirectory, exitCode in
                    RunSummary.build(dispatch: dispatch, runDirectory: runDirectory, exitCode: exitCode)
                },
                logger: stamps.logger("bench.host"))
            let messages = try await store.pendingOutbox(limit: agents).map {
                try $0.wireMessage(signedWith: signingKey)
            }
            let services = RunningServices.start([worker, consumer], logger: quietLogger("bench.services"))
            let outcome = await capture { () -> (RateFigure, LatencyFigure, Int) in
                try await waitUntil("the dispatch consumer to start", timeout: .seconds(30)) {
                    !consumer.assignment.isEmpty
                }
                let pid = getpid()
                let before = CPUSample.take(pids: [pid])
                let start = ContinuousClock.now
                for result in await producer.sendBatch(messages) {
                    if case .failure(let error) = result { throw BenchFailure("appending dispatches failed: \(error)") }
                }
                try await waitUntil("\(agents) agents to start", timeout: .seconds(180), interval: .milliseconds(5)) {
                    stamps.count(agentStarted) >= agents
                }
                let after = CPUSample.take(pids: [pid])
                let started = stamps.stamps(agentStarted)
                let end = started.map(\.at).max() ?? .now
                let seconds = (end - start).seconds
                return (
                    RateFigure(
                        count: started.count, seconds: seconds,
                        cpu: CPUUsage(from: before, to: after, wallSeconds: seconds, serverPid: nil, benchPid: pid)),
                    LatencyFigure(milliseconds: started.map { ($0.at - start).milliseconds }), started.count
                )
            }
            // Let the agents finish before stopping (the worker would re-attach to them on a restart).
            try? await waitUntil("agents to exit", timeout: .seconds(60), interval: .milliseconds(50)) {
                await journal.openRecords().allSatisfy { $0.phase == .finished && $0.unpublished.isEmpty }
            }
            try await services.stop()
            return try outcome.get()
        }
        if launched != agents { failures.append("HostWorker started \(launched) of \(agents) agents") }
        return (rate, latency)
    }

    /// Containers of the sample image, one after the other: `docker run --rm` (the CLI, to its exit)
    /// next to `DockerDriver.launch` (the call) and launch → exit through `wait`.
    static func dockerCase(socket: String, count: Int, directory: URL, failures: inout [String]) async throws -> String
    {
        let image = "agentjobs/sample-agent:dev"
        var bare: [Double] = []
        for _ in 0..<count {
            let start = ContinuousClock.now
            let status = try await offPool { () throws -> Int32 in
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/docker")
                process.arguments = [
                    "-H", "unix://" + socket, "run", "--rm", "--network", "none", image, "datahealth", "--file",
                    "bench.csv",
                ]
                process.standardOutput = FileHandle.nullDevice
                process.standardError = FileHandle.nullDevice
                try process.run()
                process.waitUntilExit()
                return process.terminationStatus
            }
            if status != 0 {
                failures.append("docker run exited with \(status)")
                return "failed: docker run exited with \(status)"
            }
            bare.append((ContinuousClock.now - start).milliseconds)
        }
        let driver = DockerDriver(
            configuration: DockerDriverConfiguration(socketPath: socket, networkMode: "none"),
            logger: quietLogger("bench.docker"))
        var calls: [Double] = []
        var toExit: [Double] = []
        for index in 0..<count {
            let runId = "run_docker\(index)_\(UUID().uuidString.prefix(6).lowercased())"
            let logDirectory = directory.appendingPathComponent(runId)
            try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
            let launch = AgentLaunch(
                runId: runId, jobId: "job_docker", hostId: "host_docker", dispatchEpoch: 1, agentType: .datahealth,
                program: image, arguments: ["datahealth", "--file", "bench.csv"], logDirectory: logDirectory.path)
            let start = ContinuousClock.now
            let handle = try await driver.launch(launch)
            calls.append((ContinuousClock.now - start).milliseconds)
            let exit = try await driver.wait(handle)
            toExit.append((ContinuousClock.now - start).milliseconds)
            try await driver.release(handle)
            if exit.exitCode != 0 {
                failures.append(
                    "DockerDriver: container of \(runId) exited with \(exit.exitCode.map(String.init) ?? "?")")
                break
            }
        }
        func summary(_ values: [Double]) -> String {
            let sorted = values.sorted()
            guard !sorted.isEmpty else { return "-" }
            let p50 = sorted[sorted.count / 2]
            let p99 = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
            return String(format: "p50 %.0f ms, p99 %.0f ms", p50, p99)
        }
        let rate = Double(count) / max(0.001, toExit.reduce(0, +) / 1000)
        return "\(count) containers each: bare `docker run --rm` to exit \(summary(bare)); "
            + "DockerDriver.launch call \(summary(calls)), launch → exit \(summary(toExit)) "
            + String(format: "(%.1f agents/s one at a time)", rate)
    }

    static func text(_ figures: Figures) -> String {
        var lines = ["Launch rate (issue #4): \(formatCount(figures.agents)) agents, \(figures.agent)"]
        func add(_ label: String, _ value: String) { lines.append(reportLine(label, value)) }
        add("bare posix_spawn + waitpid, one at a time", figures.bareSpawn.text("agents"))
        add("  spawn call", figures.bareSpawnCall.text)
        add("  spawn → exit", figures.bareSpawnToExit.text)
        add("ProcessDriver.launch, one at a time", figures.driverLaunch.text("agents"))
        add("  launch call", figures.driverLaunchCall.text)
        add("HostWorker, burst of dispatches (embedded log)", figures.worker.text("agents"))
        add("  dispatch appended → agent started", figures.workerDispatchToStarted.text)
        add("Docker", figures.docker)
        for failure in figures.failures { lines.append("  FAILED: \(failure)") }
        return lines.joined(separator: "\n")
    }
}
