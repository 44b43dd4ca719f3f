import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

/// The whole pipeline across separate processes: `serve` → Kafka → `orchestrate` → Kafka →
/// `aggregate` → store, with the process driver and the sample agents of deploy/agents.
///
/// Serialized: the aggregator's consumer group and the topics are shared by every cluster on the
/// test broker, so two clusters at once would read each other's events.
@Suite("Distributed end to end", .serialized, .enabled(if: EndToEnd.shouldRun, EndToEnd.skipReason))
struct DistributedTests {
    @Test("a triggered run goes queued → running → succeeded with its times and exit code")
    func succeeds() async throws {
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "ok")
            let job = try await cluster.createJob(hostId: host)
            let run = try await cluster.api.trigger(job)
            let done = try await cluster.waitForStatus(run, "succeeded")
            #expect(done["exitCode"]?.number == 0)
            #expect(done["startedAt"]?.string != nil)
            #expect(done["finishedAt"]?.string != nil)
            #expect(done["errorSummary"]?.string == nil)
            // Heartbeats reach host tracking through its own consumer group, which may join later.
            try await cluster.waitForHost(host, status: "online")
        }
    }

    @Test("agentjobs jobs run --wait follows the run and exits 0 only when it succeeded")
    func cliWait() async throws {
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "cli")
            func runAndWait(_ parameters: String) async throws -> (Int32, String) {
                let job = try await cluster.createJob(hostId: host, parameters: parameters)
                let process = try ChildProcess(
                    name: "agentjobs jobs run --wait", executable: EndToEnd.binary,
                    arguments: ["jobs", "run", job, "--wait", "--url", cluster.baseURL, "--token", cluster.api.token])
                return (try await process.waitForExit(), process.capturedOutput)
            }
            let (ok, okOutput) = try await runAndWait(#"{"fileName":"sleep-1"}"#)
            #expect(ok == 0, "\(okOutput)")
            #expect(okOutput.contains("succeeded"))
            let (failed, failedOutput) = try await runAndWait(#"{"fileName":"nightly-fail"}"#)
            #expect(failed == 7, "a run that ended failed exits 7: \(failedOutput)")
            #expect(failedOutput.contains("3 rows violate rule"), "the error summary is printed: \(failedOutput)")
        }
    }

    @Test("a failing lineage-plus run ends failed with each failed connection's errors and host log path")
    func failedConnectionsSummary() async throws {
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "lp")
            let job = try await cluster.createJob(
                hostId: host, agentType: "lineage-plus",
                parameters: #"{"connectorTypes":["snowflake","fail-postgres"]}"#)
            let run = try await cluster.api.trigger(job)
            let done = try await cluster.waitForStatus(run, "failed")
            let summary = try #require(done["errorSummary"]?.string)
            #expect(summary.contains("fail-postgres"), "\(summary)")
            #expect(
                summary.contains(run),
                "the summary names the log path on the host, under the run's directory: \(summary)")
            #expect((done["exitCode"]?.number ?? 0) != 0)
        }
    }

    @Test("cancel of a long run ends canceled and leaves no process of the run behind")
    func cancel() async throws {
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "cancel")
            let job = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"ignore-term"}"#)
            let run = try await cluster.api.trigger(job)
            try await cluster.waitForStatus(run, "running")
            let requested = try await cluster.api.call(.POST, "/runs/\(run)/cancel", expect: 202)
            #expect(requested["cancelRequestedAt"]?.string != nil)
            try await cluster.waitForStatus(run, "canceled", timeout: .seconds(30))
            #expect(ProcessTable.processes(mentioning: run).isEmpty, "processes of \(run) remain")
        }
    }

    @Test("a run past its timeout is stopped and ends timed_out")
    func runTimeout() async throws {
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "timeout")
            let job = try await cluster.createJob(
                hostId: host, parameters: #"{"fileName":"sleep-60"}"#, timeoutSeconds: 2)
            let run = try await cluster.api.trigger(job)
            let done = try await cluster.waitForStatus(run, "timed_out", timeout: .seconds(30))
            #expect(done["startedAt"]?.string != nil)
            #expect(done["errorSummary"]?.string?.contains("timeout") == true)
            #expect(ProcessTable.processes(mentioning: run).isEmpty, "processes of \(run) remain")
        }
    }

    @Test("a queued run of an offline host times out at its deadline and is never launched when the host returns")
    func queueDeadlineOnOfflineHost() async throws {
        try await Cluster.run(offlineGraceSeconds: 2) { cluster in
            let host = try await cluster.addHost(name: "away")
            await cluster.orchestrators[host]?.stop()
            let job = try await cluster.createJob(hostId: host, queueTimeoutSeconds: 6)
            let run = try await cluster.api.trigger(job)
            // While it waits, the API says why it is not starting.
            let waiting = try await cluster.waitForRun(run, timeout: .seconds(10)) {
                $0["waitingReason"]?.string?.contains("is offline") == true || $0["status"]?.string != "queued"
            }
            #expect(waiting["status"]?.string == "queued", "\(waiting)")
            #expect(waiting["waitingReason"]?.string?.contains("queue deadline") == true)
            let done = try await cluster.waitForStatus(run, "timed_out", timeout: .seconds(30))
            #expect(done["startedAt"]?.string == nil)
            try await cluster.startOrchestrator(hostId: host)
            // The host reads the dispatch now and must not launch it.
            try await Task.sleep(for: .seconds(3))
            let after = try await cluster.api.call(.GET, "/runs/\(run)", expect: 200)
            #expect(after["status"]?.string == "timed_out")
            #expect(after["startedAt"]?.string == nil)
            let output = cluster.orchestrators[host]?.capturedOutput ?? ""
            #expect(!output.contains("agent started"), "the orchestrator launched an expired dispatch:\n\(output)")
        }
    }

    @Test("a canceled queued run of an offline host ends canceled, and the host that returns never launches it")
    func cancelOnOfflineHost() async throws {
        try await Cluster.run(offlineGraceSeconds: 3) { cluster in
            let host = try await cluster.addHost(name: "gone")
            await cluster.orchestrators[host]?.stop()
            let job = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"sleep-30"}"#)
            let run = try await cluster.api.trigger(job)
            // Dispatched (the relay publishes within milliseconds), so the cancel is a request.
            try await Task.sleep(for: .seconds(1))
            _ = try await cluster.api.call(.POST, "/runs/\(run)/cancel", expect: 202)
            let done = try await cluster.waitForStatus(run, "canceled", timeout: .seconds(30))
            #expect(done["startedAt"] == .null)
            // Closed by the control plane once the host was offline past the grace ("never launched"),
            // or at once if the dispatch was still unsent (withdrawn, no summary).
            #expect(done["errorSummary"]?.string.map { $0.contains("never launched") } ?? true, "\(done)")
            try await cluster.startOrchestrator(hostId: host)
            try await cluster.waitForHost(host, status: "online", timeout: .seconds(30))
            try await Task.sleep(for: .seconds(2))
            let after = try await cluster.api.call(.GET, "/runs/\(run)", expect: 200)
            #expect(after["status"]?.string == "canceled")
            let output = cluster.orchestrators[host]?.capturedOutput ?? ""
            #expect(!output.contains("agent started"), "the returning host launched a canceled run:\n\(output)")
        }
    }

    @Test("kill -9 of the orchestrator mid-run: after restart the run completes once, without a second launch")
    func orchestratorCrash() async throws {
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "crash")
            let job = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"sleep-8"}"#)
            let run = try await cluster.api.trigger(job)
            let running = try await cluster.waitForStatus(run, "running")
            await cluster.orchestrators[host]?.kill9()
            try await cluster.startOrchestrator(hostId: host)
            let done = try await cluster.waitForStatus(run, "succeeded", timeout: .seconds(30))
            #expect(done["startedAt"] == running["startedAt"])
            let output = cluster.orchestrators[host]?.capturedOutput ?? ""
            #expect(output.contains("re-attached"), "\(output)")
            #expect(!output.contains("agent started"), "a second agent was launched:\n\(output)")
        }
    }

    @Test(
        "a host killed mid-run is marked offline and its run fails with host lost once silent for the lost-after time")
    func hostLost() async throws {
        try await Cluster.run(offlineGraceSeconds: 3, hostLostAfterSeconds: 5) { cluster in
            let host = try await cluster.addHost(name: "lost")
            let job = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"sleep-60"}"#)
            let run = try await cluster.api.trigger(job)
            try await cluster.waitForStatus(run, "running")
            await cluster.orchestrators[host]?.kill9()
            let done = try await cluster.waitForStatus(run, "failed", timeout: .seconds(30))
            #expect(done["errorSummary"]?.string?.hasPrefix("host lost") == true)
            try await cluster.waitForHost(host, status: "offline", timeout: .seconds(10))
            // The orphaned agent of the killed orchestrator is still running on the "host"; stop it.
            for pid in ProcessTable.processes(mentioning: run) { kill(pid, SIGKILL) }
        }
    }

    @Test(
        "with the Docker driver: a failing agent's summary, and cancel leaves no container of the run",
        .enabled(if: RequiredService.dockerEngine.shouldRun, RequiredService.dockerEngine.skipReason))
    func dockerDriver() async throws {
        let socket = try RequiredService.dockerEngine.require()
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "docker", driver: "docker")
            let failing = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"nightly-fail"}"#)
            let failed = try await cluster.waitForStatus(try await cluster.api.trigger(failing), "failed")
            #expect(failed["exitCode"]?.number == 2)
            #expect(failed["errorSummary"]?.string?.contains("3 rows violate rule") == true, "\(failed)")

            let stubborn = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"ignore-term"}"#)
            let run = try await cluster.api.trigger(stubborn)
            try await cluster.waitForStatus(run, "running")
            try await cluster.api.call(.POST, "/runs/\(run)/cancel", expect: 202)
            try await cluster.waitForStatus(run, "canceled", timeout: .seconds(30))
            let containers = try await DockerProbe.containers(socket: socket, runId: run)
            #expect(containers.isEmpty, "containers of \(run) remain: \(containers)")
        }
    }
}

/// Asks the Docker engine which containers carry a run's label.
enum DockerProbe {
    static func containers(socket: String, runId: String) async throws -> [String] {
        let filters = #"{"label":["agentjobs.run-id=\#(runId)"]}"#
        let process = try ChildProcess(
            name: "curl", executable: "/usr/bin/curl",
            arguments: [
                "-sS", "--unix-socket", socket, "-G", "http://localhost/containers/json", "--data-urlencode", "all=1",
                "--data-urlencode", "filters=\(filters)",
            ])
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .milliseconds(50))
        let output = process.capturedOutput
        guard let data = output.data(using: .utf8),
            let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        else { throw TestAPIError("the Docker engine answered: \(output)") }
        return list.compactMap { $0["Id"] as? String }
    }
}
