import AgentJobsSQLite
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// Issue #22: a burst of runs as a user sends it: `agentjobs dev` (this build) with the process
/// driver and a no-op agent, `runs` jobs created through the API, then triggered through the API
/// `concurrency` at a time, until every run has ended. Once with the host's concurrency limit at
/// 8 (`AGENTJOBS_MAX_CONCURRENT_RUNS`) and once without one, next to a bare `posix_spawn` +
/// `waitpid` of the same script measured in the same run.
enum BurstBenchmark {
    static let goalRunsPerSecond = 600.0
    static let goalCreateToRunningP99 = 1_000.0
    static let goalServerCPUPerRun = 3.0

    struct Case: Codable, Sendable {
        /// `AGENTJOBS_MAX_CONCURRENT_RUNS`, nil for none.
        var concurrencyLimit: Int?
        var runs: Int
        /// The triggers: sent, answered 201, and how long sending them all took.
        var triggers: Int
        var triggerFailures: [String: Int]
        var triggerSeconds: Double
        /// First run queued → last run ended (the store's times), and runs per second over it.
        var spanSeconds: Double
        var runsPerSecond: Double
        /// `queuedAt` → `startedAt` (created → running), and `queuedAt` → `finishedAt`.
        var createToRunning: LatencyFigure
        var createToEnded: LatencyFigure
        /// CPU-seconds of the `agentjobs dev` process (its agents are other processes) from the first
        /// trigger until every run had ended, and per run.
        var serverCPUSeconds: Double
        var serverCPUPerRunMilliseconds: Double
        /// Busy share of all cores over the same span.
        var machineBusyFraction: Double
        /// Runs by final status.
        var statuses: [String: Int]
    }

    struct Figures: Codable, Sendable {
        var runs: Int
        var concurrency: Int
        var agent: String
        /// `posix_spawn` + `waitpid` of the agent, `runs` times in turn.
        var bareSpawn: RateFigure
        var cases: [Case]
        var failures: [String]
    }

    static func run(directory: URL, runs: Int, concurrency: Int, progress: (String) -> Void) async throws -> Figures {
        let binary = try ServerProcess.locateBinary()
        let agent = try NoopAgent.write(in: directory.appendingPathComponent("agents"))
        progress("burst: bare posix_spawn + waitpid of the agent, \(runs) times")
        let (_, bareSeconds, bareCPU) = try await measured {
            try await offPool { try LaunchBenchmark.bareSpawns(agent.path, count: runs) }
        }
        var figures = Figures(
            runs: runs, concurrency: concurrency, agent: "\(agent.path) (#!/bin/sh, exit 0)",
            bareSpawn: RateFigure(count: runs, seconds: bareSeconds, cpu: bareCPU), cases: [], failures: [])
        for limit in [8, nil] as [Int?] {
            let name = limit.map { "limit-\($0)" } ?? "unlimited"
            progress(
                "burst: \(runs) runs, \(concurrency) triggers in flight, concurrency limit \(limit.map(String.init) ?? "none")"
            )
            do {
                figures.cases.append(
                    try await measure(
                        directory: directory.appendingPathComponent(name), binary: binary, agent: agent, runs: runs,
                        concurrency: concurrency, limit: limit, progress: progress))
            } catch {
                figures.failures.append("burst (\(name)): \(error)")
            }
        }
        for burst in figures.cases where burst.triggers != runs || burst.statuses["succeeded"] != runs {
            figures.failures.append(
                "burst (limit \(burst.concurrencyLimit.map(String.init) ?? "none")): \(burst.triggers) of \(runs) triggers "
                    + "answered 201 (\(burst.triggerFailures)); final statuses \(burst.statuses)")
        }
        return figures
    }

    private static func measure(
        directory: URL, binary: URL, agent: URL, runs: Int, concurrency: Int, limit: Int?, progress: (String) -> Void
    ) async throws -> Case {
        let (fixture, store) = try await Fixture.prepare(directory: directory, jobCount: 0)
        await store.close()
        let catalog = directory.appendingPathComponent("catalog.json")
        try Data(#"{"datahealth": {"image": "agentjobs/noop:bench", "command": ["\#(agent.path)"]}}"#.utf8).write(
            to: catalog)
        var environment = ["AGENTJOBS_AGENT_CATALOG": catalog.path, "AGENTJOBS_LOG_LEVEL": "warning"]
        environment["AGENTJOBS_MAX_CONCURRENT_RUNS"] = limit.map(String.init) ?? "0"
        let server = try await ServerProcess.start(
            binary: binary, dataDir: directory, logFile: directory.appendingPathComponent("server.log"),
            environment: environment)
        let outcome: Result<(LoadRun, CPUUsage), any Error>
        do {
            outcome = .success(
                try await burst(
                    server: server, token: fixture.adminToken, runs: runs, concurrency: concurrency,
                    databasePath: fixture.databasePath, progress: progress))
        } catch {
            outcome = .failure(error)
        }
        await server.stop()
        let (triggers, cpu) = try outcome.get()
        let rows = try await offPool { try RunTimes.read(fixture.databasePath) }
        let queued = rows.map(\.queued)
        let span = Double((rows.compactMap(\.finished).max() ?? 0) - (queued.min() ?? 0)) / 1000
        let serverSeconds = cpu.serverSeconds ?? 0
        return Case(
            concurrencyLimit: limit, runs: runs, triggers: triggers.operations - triggers.failureCount,
            triggerFailures: triggers.failures, triggerSeconds: triggers.elapsed.seconds, spanSeconds: span,
            runsPerSecond: span > 0 ? Double(rows.count) / span : 0,
            createToRunning: LatencyFigure(
                milliseconds: rows.compactMap { row in row.started.map { Double($0 - row.queued) } }),
            createToEnded: LatencyFigure(
                milliseconds: rows.compactMap { row in row.finished.map { Double($0 - row.queued) } }),
            serverCPUSeconds: serverSeconds,
            serverCPUPerRunMilliseconds: rows.isEmpty ? 0 : serverSeconds * 1000 / Double(rows.count),
            machineBusyFraction: cpu.machineBusyFraction,
            statuses: Dictionary(grouping: rows, by: \.status).mapValues(\.count))
    }

    /// Creates `runs` jobs on the embedded host through the API, then triggers each once, and waits
    /// until every run has ended; the CPU is sampled from the first trigger to then.
    private static func burst(
        server: ServerProcess, token: String, runs: Int, concurrency: Int, databasePath: String,
        progress: (String) -> Void
    ) async throws -> (LoadRun, CPUUsage) {
        let base = "http://127.0.0.1:\(server.port)/api/v1"
        let hostId = try await localHostId(base: base, token: token)
        progress("burst: creating \(runs) jobs on host \(hostId) through the API")
        let jobIds = try await createJobs(base: base, token: token, hostId: hostId, count: runs)
        let client = SocketLoadGenerator(port: server.port, authorization: "Bearer \(token)", concurrency: concurrency)
        defer { client.close() }
        progress("burst: triggering \(runs) jobs, \(concurrency) at a time, until every run has ended")
        let pids = [server.pid, getpid()]
        let before = CPUSample.take(pids: pids)
        let start = ContinuousClock.now
        let triggers = await client.run(items: jobIds[...]) { "/api/v1/jobs/\($0)/runs" }
        let deadline = ContinuousClock.now + .seconds(600)
        while true {
            let active = try await offPool {
                try SQLiteConnection(path: databasePath).count(
                    "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
            }
            if active == 0 { break }
            guard ContinuousClock.now < deadline else {
                throw BenchFailure("\(active) runs of the burst had not ended after 10 minutes")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let after = CPUSample.take(pids: pids)
        return (
            triggers,
            CPUUsage(
                from: before, to: after, wallSeconds: (ContinuousClock.now - start).seconds, serverPid: server.pid,
                benchPid: getpid())
        )
    }

    /// The id of `agentjobs dev`'s own host.
    private static func localHostId(base: String, token: String) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let body = try await call(.GET, base + "/hosts?limit=500", token: token)
            if let hosts = (try JSONSerialization.jsonObject(with: body) as? [String: Any])?["hosts"]
                as? [[String: Any]],
                let local = hosts.first(where: { $0["name"] as? String == "local" }), let id = local["id"] as? String
            {
                return id
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw BenchFailure("agentjobs dev did not list its local host within 30 s")
    }

    private static func createJobs(base: String, token: String, hostId: String, count: Int) async throws -> [String] {
        let ids = Mutex([Int: String]())
        let load = await runLoad(items: (0..<count).map(String.init)[...], concurrency: 16) { index in
            let body =
                #"{"name":"burst-\#(index)","hostId":"\#(hostId)","agentType":"datahealth","parameters":{"fileName":"burst.csv"}}"#
            do {
                let answer = try await call(.POST, base + "/jobs", token: token, body: body, expect: .created)
                guard let id = (try JSONSerialization.jsonObject(with: answer) as? [String: Any])?["id"] as? String
                else {
                    return .failure(kind: "no id", detail: String(decoding: answer, as: UTF8.self))
                }
                ids.withLock { $0[Int(index)!] = id }
                return .success
            } catch {
                return .failure(kind: "create job", detail: "\(error)")
            }
        }
        guard load.failureCount == 0 else {
            throw BenchFailure("\(load.failureCount) of \(count) jobs could not be created: \(load.failureDetails)")
        }
        return ids.withLock { created in (0..<count).compactMap { created[$0] } }
    }

    private static func call(
        _ method: HTTPMethod, _ url: String, token: String, body: String? = nil, expect: HTTPResponseStatus = .ok
    ) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        guard response.status == expect else {
            throw BenchFailure("\(method) \(url): \(response.status.code) \(String(decoding: bytes, as: UTF8.self))")
        }
        return bytes
    }

    /// The times of every run, read after the server stopped.
    struct RunTimes {
        var status: String
        var queued: Int64
        var started: Int64?
        var finished: Int64?

        static func read(_ path: String) throws -> [RunTimes] {
            try SQLiteConnection(path: path).query("SELECT status, queued_at, started_at, finished_at FROM runs").map {
                row in
                RunTimes(
                    status: row.string("status") ?? "?", queued: row.int64("queued_at") ?? 0,
                    started: row.int64("started_at"), finished: row.int64("finished_at"))
            }
        }
    }

    static func text(_ figures: Figures) -> String {
        var lines = [
            "Burst (issue #22): agentjobs dev (this build, process driver), \(formatCount(figures.runs)) jobs created "
                + "through the API, each triggered once, \(figures.concurrency) triggers in flight; agent \(figures.agent)",
            reportLine("bare posix_spawn + waitpid (baseline)", figures.bareSpawn.text("agents")),
        ]
        for burst in figures.cases {
            let limit = burst.concurrencyLimit.map { "limit \($0)" } ?? "no limit"
            lines += [
                "  \(limit):",
                reportLine(
                    "    end to end",
                    "\(formatRate(burst.runsPerSecond)) runs/s (\(formatCount(burst.runs)) in \(formatFixed(burst.spanSeconds, 2)) s, first queued → last ended; goal ≥ \(formatRate(goalRunsPerSecond)))"
                ),
                reportLine(
                    "    triggers sent",
                    "\(formatCount(burst.triggers)) answered 201 in \(formatFixed(burst.triggerSeconds, 2)) s"),
                reportLine(
                    "    create → running",
                    burst.createToRunning.text + " (goal p99 ≤ \(formatFixed(goalCreateToRunningP99, 0)) ms)"),
                reportLine("    create → ended", burst.createToEnded.text),
                reportLine(
                    "    server CPU",
                    "\(formatFixed(burst.serverCPUSeconds, 2)) s = \(formatFixed(burst.serverCPUPerRunMilliseconds, 2)) ms per run (goal ≤ \(formatFixed(goalServerCPUPerRun, 0)) ms); machine \(formatFixed(burst.machineBusyFraction * 100, 0))% busy"
                ),
                reportLine(
                    "    final statuses",
                    burst.statuses.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")),
            ]
        }
        lines += figures.failures.map { "  FAILURE: \($0)" }
        return lines.joined(separator: "\n")
    }
}
