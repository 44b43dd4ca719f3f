import AgentJobsCore
import AgentJobsStore
import AgentJobsTestSupport
import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// `agentjobs dev` stopped with SIGTERM while agents run, as on Ctrl-C, `systemctl restart` or an
/// upgrade: nothing a user sees changes but timing.
extension CrashRecoveryTests {
    @Test(
        "SIGTERM of agentjobs dev during 20 running runs records no outcome; after the restart every run ends as its agent did, none launched twice"
    )
    func sigtermDetachesAndRestartReattaches() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-sigterm-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let runsDirectory = dataDir.appendingPathComponent("host/runs")
        let first = try await AgentJobsProcess(dataDir: dataDir)
        let token = try String(contentsOf: dataDir.appendingPathComponent("admin-token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let base = "http://127.0.0.1:\(first.port)/api/v1"
        let (_, hosts) = try await request(.GET, base + "/hosts", token: token)
        let hostId = try #require(hosts["hosts"]?.array.first?["id"]?.string)
        // 15 agents that succeed and 5 that fail, each once the test creates `go` (`go-fail`) in its run directory.
        var runs: [(id: String, fails: Bool)] = []
        for index in 0..<20 {
            let fails = index % 4 == 0
            let file = fails ? "wait-for-go-fail" : "wait-for-go"
            let body =
                #"{"name":"job-\#(index)","hostId":"\#(hostId)","agentType":"datahealth","parameters":{"fileName":"\#(file)"}}"#
            let (_, job) = try await request(.POST, base + "/jobs", token: token, body: body)
            let jobId = try #require(job["id"]?.string)
            let (queued, run) = try await request(.POST, base + "/jobs/\(jobId)/runs", token: token)
            #expect(queued == 201)
            runs.append((try #require(run["id"]?.string), fails))
        }
        defer { for run in runs { ProcessTable.killAll(mentioning: run.id) } }
        try await waitUntil(runs.map(\.id), base: base, token: token, are: ["running"])

        await first.stop()
        // Nothing was recorded about the runs' ends, and every agent still runs.
        let store = try SQLiteStore(path: dataDir.appendingPathComponent("agentjobs.sqlite").path)
        for run in runs {
            #expect(try await store.run(id: run.id)?.status == .running, "run \(run.id) changed on SIGTERM")
            #expect(!ProcessTable.processes(mentioning: run.id).isEmpty, "the agent of \(run.id) did not survive")
        }
        await store.close()

        // Half of the agents end while no orchestrator runs, the rest after the restart.
        try await Task.sleep(for: .seconds(1))
        func release(_ run: (id: String, fails: Bool)) {
            let name = run.fails ? "go-fail" : "go"
            #expect(
                FileManager.default.createFile(
                    atPath: runsDirectory.appendingPathComponent("\(run.id)/\(name)").path, contents: nil))
        }
        for run in runs.prefix(10) { release(run) }
        let second = try await AgentJobsProcess(dataDir: dataDir)
        let restarted = "http://127.0.0.1:\(second.port)/api/v1"
        for run in runs.suffix(10) { release(run) }
        try await waitUntil(runs.map(\.id), base: restarted, token: token, are: ["succeeded", "failed"])
        for run in runs {
            let (_, body) = try await request(.GET, restarted + "/runs/\(run.id)", token: token)
            #expect(body["status"]?.string == (run.fails ? "failed" : "succeeded"), "\(body)")
            #expect(body["exitCode"]?.number == (run.fails ? 2 : 0), "\(body)")
            let launches = try String(
                contentsOf: runsDirectory.appendingPathComponent("\(run.id)/launches"), encoding: .utf8)
            #expect(launches.split(separator: "\n").count == 1, "run \(run.id) launched more than once: \(launches)")
            #expect(ProcessTable.processes(mentioning: run.id).isEmpty, "processes of \(run.id) remain")
        }
        await second.stop()
    }

    /// The moment a user presses Ctrl-C after reading the start-up banner: the aggregator, host
    /// tracking and the orchestrator are still joining their groups when the consumers stop under
    /// them (a commit then fails for good, and a retry loop once held the stop forever).
    @Test("SIGTERM right after start-up stops agentjobs dev cleanly, 12 times in a row")
    func sigtermRightAfterStart() async throws {
        for attempt in 1...12 {
            let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
                "agentjobs-early-stop-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: dataDir) }
            let process = try await AgentJobsProcess(dataDir: dataDir)
            // A different instant of start-up each time: at once, then up to 0.55 s later.
            try await Task.sleep(for: .milliseconds(50 * (attempt - 1) % 600))
            await process.stop()  // a failure unless it exits within 20 s
            #expect(
                process.process.terminationStatus == 0,
                "attempt \(attempt): exit status \(process.process.terminationStatus)")
        }
    }

    /// Consoles left open wait on `GET /runs/changes` for up to 55 s each; the HTTP server's drain
    /// waits for requests in progress, so without the feed answering them first a SIGTERM would
    /// wait out the longest poll.
    @Test("SIGTERM of agentjobs dev with 8 consoles waiting on the run change feed answers them at once and stops")
    func sigtermWithWaitingLongPolls() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-long-poll-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let process = try await AgentJobsProcess(dataDir: dataDir)
        let token = try String(contentsOf: dataDir.appendingPathComponent("admin-token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let changes = "http://127.0.0.1:\(process.port)/api/v1/runs/changes"
        var current: String?
        try await AgentJobsTestSupport.waitUntil("the run change feed is live", within: .seconds(20)) {
            let (_, answer) = try await request(.GET, changes, token: token)
            current = answer["token"]?.string
            return answer["live"] == .bool(true)
        }
        let after = try #require(current)
        let polls = (0..<8).map { _ in
            Task { try await request(.GET, changes + "?after=\(after)&waitSeconds=55", token: token) }
        }
        // Every poll waits on the server before the SIGTERM (a request still on its way when the
        // server stops taking them is reset, as by any server that stops).
        // A client of its own: the polls hold the shared client's 8 connections to the server.
        let metrics = "http://127.0.0.1:\(process.port)/metrics"
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await AgentJobsTestSupport.waitUntil("8 polls wait on the feed", within: .seconds(30)) {
                let response = try await client.execute(HTTPClientRequest(url: metrics), timeout: .seconds(10))
                let text = String(buffer: try await response.body.collect(upTo: 1 << 22))
                return text.split(separator: "\n").contains { line in
                    line.hasPrefix("agentjobs_run_change_polls_waiting ")
                        && Double(line.split(separator: " ").last ?? "") == 8
                }
            }
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
        let stopping = ContinuousClock.now
        await process.stop(within: 10)  // a failure unless it exits within 10 s
        #expect(process.process.terminationStatus == 0)
        for poll in polls {
            let (status, answer) = try await poll.value
            #expect(status == 200 && answer["changed"] == .bool(false) && answer["live"] == .bool(false), "\(answer)")
        }
        #expect(ContinuousClock.now - stopping < .seconds(15))
    }

    @Test("the embedded shape's data dir, secrets and database are private to their owner")
    func secretsArePrivate() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-modes-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let process = try await AgentJobsProcess(dataDir: dataDir)
        let expected: [(String, UInt32)] = [
            ("", 0o700), ("admin-token", 0o600), ("dispatch-signing.key", 0o600), ("host", 0o700),
            ("host/host.json", 0o600), ("agentjobs.sqlite", 0o600), ("agentjobs.sqlite-wal", 0o600),
            ("agentjobs.sqlite-shm", 0o600),
        ]
        for (name, mode) in expected {
            let path = name.isEmpty ? dataDir.path : dataDir.appendingPathComponent(name).path
            let actual = PrivateFiles.mode(of: path)
            #expect(
                actual == mode,
                "\(name.isEmpty ? "data dir" : name): mode \(actual.map { String($0, radix: 8) } ?? "missing")")
        }
        await process.stop()
    }

    /// Waits (up to 60 s) until every run has one of `statuses`.
    func waitUntil(_ runIds: [String], base: String, token: String, are statuses: Set<String>) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        var open = runIds
        while !open.isEmpty {
            var still: [String] = []
            for runId in open {
                let (_, run) = try await request(.GET, base + "/runs/\(runId)", token: token)
                if !statuses.contains(run["status"]?.string ?? "") { still.append(runId) }
            }
            open = still
            if open.isEmpty { return }
            guard ContinuousClock.now < deadline else {
                Issue.record("runs not \(statuses.sorted()) after 60 s: \(open)")
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
