import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

/// `agentjobs orchestrate` stopped with SIGTERM (an upgrade, `systemctl restart`) while 20 runs
/// run, on a process-driver host and a Docker-driver host, restarted after 1 s and after 60 s:
/// nothing is recorded while it is down, agents keep running, and every run ends as its agent did,
/// launched once.
@Suite(
    "Orchestrator restarts end to end", .serialized, .timeLimit(.minutes(8)),
    .enabled(if: EndToEnd.shouldRun, EndToEnd.skipReason))
struct OrchestratorRestartTests {
    @Test("SIGTERM of both drivers' orchestrators during 20 running runs, restarted after 1 s and after 60 s")
    func sigtermAndRestart() async throws {
        let socket = try RequiredService.dockerEngine.require()
        try await Cluster.run(userDefaults: true) { cluster in
            let hosts = [
                try await cluster.addHost(name: "restart-process", driver: "process"),
                try await cluster.addHost(name: "restart-docker", driver: "docker"),
            ]
            let drivers = [hosts[0]: "process", hosts[1]: "docker"]
            for downtime in [Duration.seconds(1), .seconds(60)] {
                // Ten runs per host; every fourth fails, each once the test creates its file.
                var runs: [(id: String, host: String, fails: Bool)] = []
                for host in hosts {
                    for index in 0..<10 {
                        let fails = index % 4 == 0
                        let job = try await cluster.createJob(
                            hostId: host, parameters: #"{"fileName":"wait-for-go\#(fails ? "-fail" : "")"}"#)
                        runs.append((try await cluster.api.trigger(job), host, fails))
                    }
                }
                for run in runs { try await cluster.waitForStatus(run.id, "running") }

                for host in hosts { await cluster.orchestrators[host]?.stop(grace: .seconds(30)) }
                for host in hosts {
                    #expect(cluster.orchestrators[host]?.exitStatus == 0, "orchestrate of \(host) did not exit cleanly")
                }
                // Half of the agents end while no orchestrator runs, the rest after the restart.
                for run in runs.enumerated().filter({ $0.offset % 2 == 0 }).map(\.element) { try release(run, cluster) }
                try await Task.sleep(for: downtime)
                for run in runs {
                    let current = try await cluster.api.call(.GET, "/runs/\(run.id)", expect: 200)
                    #expect(
                        current["status"]?.string == "running", "changed while its orchestrator was down: \(current)")
                }
                for run in runs where drivers[run.host] == "docker" {
                    #expect(try await !DockerProbe.containers(socket: socket, runId: run.id).isEmpty)
                }

                let restart = ContinuousClock.now
                for host in hosts { try await cluster.startOrchestrator(hostId: host, driver: drivers[host]!) }
                // Re-attached: every orchestrator says so for each of its runs still running or ended.
                for host in hosts {
                    let expected = runs.filter { $0.host == host }.count
                    _ = try await cluster.orchestrators[host]!.waitForOutput(timeout: .seconds(60)) { output in
                        output.components(separatedBy: "re-attached to a running agent").count - 1 >= expected
                            ? true : nil
                    }
                }
                print(
                    "orchestrators restarted after \(downtime) down: \(runs.count) runs re-attached \(ContinuousClock.now - restart) after the restart"
                )
                for run in runs.enumerated().filter({ $0.offset % 2 != 0 }).map(\.element) { try release(run, cluster) }
                for run in runs {
                    let done = try await cluster.waitForRun(run.id) {
                        $0["status"]?.string.flatMap(RunStatus.init(rawValue:))?.isTerminal == true
                    }
                    #expect(done["status"]?.string == (run.fails ? "failed" : "succeeded"), "\(done)")
                    #expect(done["exitCode"]?.number == (run.fails ? 2 : 0), "\(done)")
                    let directory = try #require(cluster.hostDirectories[run.host]).appendingPathComponent(
                        "runs/\(run.id)")
                    let launches = try String(contentsOf: directory.appendingPathComponent("launches"), encoding: .utf8)
                    #expect(
                        launches.split(separator: "\n").count == 1, "\(run.id) launched more than once: \(launches)")
                }
                for run in runs {
                    if drivers[run.host] == "docker" {
                        // Removed just after the run's end is journaled (and published).
                        let deadline = ContinuousClock.now + .seconds(15)
                        while try await !DockerProbe.containers(socket: socket, runId: run.id).isEmpty,
                            ContinuousClock.now < deadline
                        {
                            try await Task.sleep(for: .milliseconds(200))
                        }
                        #expect(try await DockerProbe.containers(socket: socket, runId: run.id).isEmpty)
                    } else {
                        #expect(ProcessTable.processes(mentioning: run.id).isEmpty, "processes of \(run.id) remain")
                    }
                }
            }
        }
    }

    /// Lets a run's agent end: succeed, or fail for the runs meant to fail.
    func release(_ run: (id: String, host: String, fails: Bool), _ cluster: Cluster) throws {
        let directory = try #require(cluster.hostDirectories[run.host]).appendingPathComponent("runs/\(run.id)")
        #expect(
            FileManager.default.createFile(
                atPath: directory.appendingPathComponent(run.fails ? "go-fail" : "go").path, contents: nil))
    }
}
