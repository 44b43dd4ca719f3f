import AgentJobsCore
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Testing

/// Retries through `agentjobs dev`: the control plane, the status aggregator and a local
/// orchestrator running the sample agents as processes.
extension CrashRecoveryTests {
    /// A started `agentjobs dev` with its admin token and local host.
    struct Dev {
        var process: AgentJobsProcess
        var base: String
        var token: String
        var hostId: String
        var dataDir: URL

        static func start(_ dataDir: URL, environment: [String: String] = [:], test: CrashRecoveryTests)
            async throws -> Dev
        {
            let process = try await AgentJobsProcess(dataDir: dataDir, environment: environment)
            let token = try String(contentsOf: dataDir.appendingPathComponent("admin-token"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let base = "http://127.0.0.1:\(process.port)/api/v1"
            let (_, hosts) = try await test.request(.GET, base + "/hosts", token: token)
            let hostId = try #require(hosts["hosts"]?.array.first?["id"]?.string)
            return Dev(process: process, base: base, token: token, hostId: hostId, dataDir: dataDir)
        }

        /// Creates a datahealth job checking `file`, with `retry` (a JSON object), and runs it.
        func runJob(_ name: String, file: String, retry: String, test: CrashRecoveryTests) async throws -> (
            job: String, run: String
        ) {
            let body =
                #"{"name":"\#(name)","hostId":"\#(hostId)","agentType":"datahealth","parameters":{"fileName":"\#(file)"},"retry":\#(retry)}"#
            let (created, job) = try await test.request(.POST, base + "/jobs", token: token, body: body)
            #expect(created == 201, "\(job)")
            let jobId = try #require(job["id"]?.string)
            let (queued, run) = try await test.request(.POST, base + "/jobs/\(jobId)/runs", token: token)
            #expect(queued == 201, "\(run)")
            return (jobId, try #require(run["id"]?.string))
        }

        /// The job's runs, oldest first.
        func runs(of jobId: String, test: CrashRecoveryTests) async throws -> [JSONValue] {
            let (_, page) = try await test.request(.GET, base + "/runs?jobId=\(jobId)&limit=100", token: token)
            return (page["runs"]?.array ?? []).reversed()
        }

        /// Waits (up to `limit` seconds) until the job has `count` runs, all ended.
        func waitForChain(_ jobId: String, count: Int, limit: Int = 60, test: CrashRecoveryTests) async throws
            -> [JSONValue]
        {
            let deadline = ContinuousClock.now + .seconds(limit)
            while true {
                let runs = try await runs(of: jobId, test: test)
                let ended = runs.allSatisfy { !["queued", "running"].contains($0["status"]?.string ?? "") }
                if runs.count >= count && ended { return runs }
                guard ContinuousClock.now < deadline else {
                    Issue.record(
                        "job \(jobId): \(runs.map { $0["status"]?.string ?? "?" }) after \(limit) s, expected \(count) ended runs"
                    )
                    return runs
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }

        /// How many times the agent of `runId` was launched.
        func launches(_ runId: String) -> Int {
            let file = dataDir.appendingPathComponent("host/runs/\(runId)/launches")
            let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").count
        }
    }

    static func date(_ value: JSONValue?) -> Date? { value?.string.flatMap { ISO8601.parse($0) } }

    /// One `agentjobs dev` for every scenario (each `dev` is a control plane, an aggregator and an
    /// orchestrator: on a 2-core CI machine, one per scenario loaded the suite's other tests).
    @Test(
        "through agentjobs dev: an agent that always fails runs exactly maxAttempts times, each retry after a longer delay; one that fails once runs twice; canceling a pending retry ends its chain; jobs run --wait follows a run through its retry"
    )
    func retriesEndToEnd() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-retries-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let dev = try await Dev.start(dataDir, test: self)
        let key = UUID().uuidString.prefix(8).lowercased()
        defer {
            for name in ["api", "cli"] {
                try? FileManager.default.removeItem(atPath: "/tmp/agentjobs-flaky-\(key)\(name)")
            }
        }
        let failing = try await dev.runJob(
            "always-fails", file: "fail", retry: #"{"maxAttempts":3,"initialDelaySeconds":1,"backoffFactor":3}"#,
            test: self)
        let flaky = try await dev.runJob(
            "fails-once", file: "flaky-1-\(key)api", retry: #"{"maxAttempts":3,"initialDelaySeconds":1}"#,
            test: self)
        let canceling = try await dev.runJob(
            "canceled-chain", file: "fail", retry: #"{"maxAttempts":5,"initialDelaySeconds":30}"#, test: self)

        // The CLI: a job with retries, run with --wait, followed through its retry to success.
        let port = dev.process.port
        let (created, job) = try await cli(
            [
                "jobs", "create", "--name", "cli-flaky", "--host", dev.hostId, "--agent-type", "datahealth",
                "--file-name", "flaky-1-\(key)cli", "--retry-max-attempts", "3", "--retry-delay", "1", "--retry-on",
                "failed",
            ], port: port, token: dev.token)
        #expect(created == 0, "\(job)")
        #expect(job.contains("ATTEMPTS"), "\(job)")
        async let waited = cli(["jobs", "run", "cli-flaky", "--wait"], port: port, token: dev.token)

        // Canceling a pending retry ends its chain, and its job can run again at once.
        let deadline = ContinuousClock.now + .seconds(30)
        var pending: JSONValue?
        while pending == nil && ContinuousClock.now < deadline {
            pending = try await dev.runs(of: canceling.job, test: self).first { $0["attempt"]?.number == 2 }
            if pending == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let retry = try #require(pending?["id"]?.string)
        #expect(pending?["heldUntil"]?.string != nil)
        let (busy, refusal) = try await request(.POST, dev.base + "/jobs/\(canceling.job)/runs", token: dev.token)
        #expect(busy == 409)
        #expect(refusal["error"]?["activeRunId"]?.string == retry)
        let (status, canceled) = try await request(.POST, dev.base + "/runs/\(retry)/cancel", token: dev.token)
        #expect(status == 202)
        #expect(canceled["status"]?.string == "canceled")
        let (again, rerun) = try await request(.POST, dev.base + "/jobs/\(canceling.job)/runs", token: dev.token)
        #expect(again == 201)
        #expect(rerun["attempt"]?.number == 1)

        let chain = try await dev.waitForChain(failing.job, count: 3, test: self)
        let twice = try await dev.waitForChain(flaky.job, count: 2, test: self)
        // Longer than the next delay would be (9 s): a fourth attempt would be queued by now.
        try await Task.sleep(for: .seconds(4))
        let final = try await dev.runs(of: failing.job, test: self)
        #expect(final.count == 3, "\(final.map { $0["status"]?.string ?? "?" })")
        #expect(chain.map { $0["attempt"]?.number } == [1, 2, 3])
        #expect(chain.map { $0["status"]?.string } == ["failed", "failed", "failed"])
        #expect(chain[0]["id"]?.string == failing.run)
        #expect(chain[1]["retryOf"] == chain[0]["id"])
        #expect(chain[2]["retryOf"] == chain[1]["id"])
        // Each retry is queued its delay after the previous attempt ended (1 s, then 3 s).
        var gaps: [Double] = []
        for index in 1..<chain.count {
            let ended = try #require(Self.date(chain[index - 1]["finishedAt"]))
            let queued = try #require(Self.date(chain[index]["queuedAt"]))
            gaps.append(queued.timeIntervalSince(ended))
        }
        #expect(gaps.count == 2 && gaps[0] >= 0.9 && gaps[1] >= 2.9 && gaps[1] > gaps[0], "gaps \(gaps)")
        for run in chain {
            let id = try #require(run["id"]?.string)
            #expect(dev.launches(id) == 1, "run \(id) launched \(dev.launches(id)) times")
        }
        #expect(twice.map { $0["status"]?.string } == ["failed", "succeeded"])
        #expect(twice.map { $0["attempt"]?.number } == [1, 2])
        let canceledChain = try await dev.runs(of: canceling.job, test: self)
        #expect(canceledChain.prefix(2).map { $0["status"]?.string } == ["failed", "canceled"])
        let retriedAgain = canceledChain.contains { run in run["retryOf"] == .string(retry) }
        #expect(!retriedAgain, "the canceled retry was retried")
        #expect(dev.launches(retry) == 0, "a canceled pending retry was launched")

        let (exit, output) = try await waited
        #expect(exit == 0, "\(output)")
        #expect(output.contains("failed; retried as run_"), "\(output)")
        #expect(output.contains("(attempt 2 of 3, due "), "\(output)")
        #expect(output.contains("succeeded"), "\(output)")
        let (_, listed) = try await cli(["runs", "list", "--job", "cli-flaky"], port: port, token: dev.token)
        #expect(listed.contains("manual, attempt 2/3"), "\(listed)")
        await dev.process.stop()
    }

    @Test(
        "kill -9 of agentjobs dev while an attempt runs, and again while its retry waits, neither loses nor doubles a retry"
    )
    func killNineDuringRetries() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-retry-kill-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        var dev = try await Dev.start(dataDir, test: self)
        // Each attempt runs 4 s, then fails; retries 2 s later.
        let job = try await dev.runJob(
            "slow-fail", file: "soak-4-3", retry: #"{"maxAttempts":3,"initialDelaySeconds":2,"backoffFactor":1}"#,
            test: self)
        defer { ProcessTable.killAll(mentioning: job.run) }
        // Running (on a loaded machine its start and end may be applied together: failed).
        try await waitUntil([job.run], base: dev.base, token: dev.token, are: ["running", "failed"])
        // The agent ends while nothing runs the control plane or the orchestrator.
        await dev.process.kill9()
        try await Task.sleep(for: .seconds(5))
        dev = try await Dev.start(dataDir, test: self)
        let deadline = ContinuousClock.now + .seconds(30)
        var pending: JSONValue?
        while pending == nil && ContinuousClock.now < deadline {
            pending = try await dev.runs(of: job.job, test: self).first { $0["attempt"]?.number == 2 }
            if pending == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(pending != nil, "the first attempt's end wrote no retry")
        // Killed again while the retry waits out its delay (or has just been dispatched).
        await dev.process.kill9()
        dev = try await Dev.start(dataDir, test: self)
        let chain = try await dev.waitForChain(job.job, count: 3, test: self)
        try await Task.sleep(for: .seconds(3))
        let final = try await dev.runs(of: job.job, test: self)
        #expect(final.count == 3, "\(final.map { $0["status"]?.string ?? "?" })")
        #expect(chain.map { $0["attempt"]?.number } == [1, 2, 3])
        #expect(chain.map { $0["status"]?.string } == ["failed", "failed", "failed"])
        for run in chain {
            let id = try #require(run["id"]?.string)
            #expect(dev.launches(id) == 1, "run \(id) launched \(dev.launches(id)) times")
            #expect(run["exitCode"]?.number == 3, "\(run)")
        }
        await dev.process.stop()
    }
}
