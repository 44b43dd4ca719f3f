import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

@testable import AgentJobsOrchestrator

/// An agent owns the files in its run directory and may plant links there, aimed at the host's
/// secrets or system files: the orchestrator must never read or write through them.
@Suite("Hostile agents", .timeLimit(.minutes(2)))
struct HostileAgentTests {
    @Test(
        "links planted in the run directory never leak a secret into the summary or touch their target",
        arguments: DriverKind.selected)
    func plantedLinksAreNeverFollowed(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            // Stands for host.json, the journal or /etc/passwd: a secret outside the run directory.
            let secret = "ajh_SECRETCREDENTIAL\nroot:x:0:0:root:/root:/bin/bash\n"
            let target = fixture.root + "/host.json"
            #expect(FileManager.default.createFile(atPath: target, contents: Data(secret.utf8)))
            var launch = try fixture.launch(.datahealth, .file(fileName: "plant-links"))
            launch.environment["AGENTJOBS_TEST_LINK_TARGET"] = target
            let handle = try await fixture.driver.launch(launch)
            let exit = try await fixture.driver.wait(handle)
            // The wrapper's exit record was a planted link: the code is the agent's, or unknown.
            #expect(exit.exitCode == 1 || exit.exitCode == nil)

            #expect(contents(target) == secret, "the link target was written or truncated")
            let directory = URL(fileURLWithPath: handle.logDirectory)
            let dispatch = RunDispatch(
                run: Run(
                    id: handle.runId, jobId: "job_test", jobName: "hostile", jobVersion: 1, hostId: "host_test",
                    agentType: .lineagePlus, parameters: .connectors(connectorTypes: ["a"], connectionName: nil),
                    timeoutSeconds: 60, queueTimeoutSeconds: 60, trigger: .api, queuedAt: Date()))
            var datahealth = dispatch
            datahealth.agentType = .datahealth
            for summary in [
                RunSummary.build(dispatch: dispatch, runDirectory: directory, exitCode: exit.exitCode),
                RunSummary.build(dispatch: datahealth, runDirectory: directory, exitCode: exit.exitCode),
            ] {
                #expect(!summary.contains("SECRETCREDENTIAL"), "\(summary)")
                #expect(!summary.contains("root:x:0:0"), "\(summary)")
            }
            // Reading the directory's files through the hardened helpers never blocks on the FIFO.
            #expect(RunDirectoryFiles.tail(handle.logDirectory + "/conn-fifo.log", maxBytes: 100) == nil)
            #expect(RunDirectoryFiles.tail(handle.logDirectory + "/conn-a.log", maxBytes: 100) == nil)
        }
    }

    @Test("appending to a log name an agent linked elsewhere replaces the link instead of writing through it")
    func appendingReplacesPlantedLinks() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-links-\(UUID())").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let target = root + "/secret"
        #expect(FileManager.default.createFile(atPath: target, contents: Data("secret".utf8)))
        #expect(symlink(target, root + "/stdout.log") == 0)
        #expect(link(target, root + "/stderr.log") == 0)
        #expect(mkfifo(root + "/fifo.log", 0o644) == 0)
        for name in ["stdout.log", "stderr.log", "fifo.log"] {
            let writer = try RotatingLogWriter(
                path: root + "/" + name, policy: try LogRotationPolicy(maxFileBytes: 4, maxFiles: 2))
            try writer.write(Array("0123456789".utf8))
            #expect(RunDirectoryFiles.isPlainFile(root + "/" + name))
        }
        #expect(contents(target) == "secret")
        // In-place rotation of a linked name leaves the target alone as well.
        #expect(symlink(target, root + "/big.log") == 0)
        #expect(
            try !AgentLogFiles.rotateInPlaceIfNeeded(
                root + "/big.log", policy: try LogRotationPolicy(maxFileBytes: 1, maxFiles: 2)))
        try RunDirectoryFiles.truncate(root + "/big.log")
        #expect(contents(target) == "secret")
    }
}

@Suite("Agents as another user")
struct AgentUserTests {
    @Test(
        "AGENTJOBS_PROCESS_USER runs the agent as that user, in its own directory, without the orchestrator's secrets",
        .enabled(if: geteuid() == 0 || RequiredService.isCI, "switching users needs root"))
    func agentRunsAsAnotherUser() async throws {
        // CI runs as root: there, not being root is a failure, never a skip.
        try #require(geteuid() == 0, "switching users needs root; CI must run the tests as root")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-user-\(UUID())").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let secret = root + "/host.json"
        try PrivateFiles.write(Array("ajh_SECRET".utf8), to: secret)
        let driver = ProcessDriver(
            configuration: ProcessDriverConfiguration(stateDirectory: root + "/state", agentUser: "nobody"),
            logger: testLogger("process-driver"))
        let script = "id -u; cat '\(secret)' || echo denied; touch \"$AGENTJOBS_LOG_DIR/mine\" && echo wrote"
        let launch = AgentLaunch(
            runId: "run_user", jobId: "job", hostId: "host", dispatchEpoch: 1, agentType: .datahealth,
            program: "/bin/sh", arguments: ["-c", script], environment: [:], logDirectory: root + "/runs/run_user")
        let handle = try await driver.launch(launch)
        let exit = try await driver.wait(handle)
        #expect(exit.exitCode == 0)
        let output = contents(handle.stdoutPath)
        #expect(output.hasPrefix("65534\n"), "\(output)")
        #expect(output.contains("denied") && !output.contains("ajh_SECRET"), "\(output)")
        #expect(output.contains("wrote"), "\(output)")
    }

    @Test("an unknown agent user is refused at launch with a clear message")
    func unknownUserIsRefused() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-user-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let driver = ProcessDriver(
            configuration: ProcessDriverConfiguration(stateDirectory: root + "/state", agentUser: "no-such-user-x"),
            logger: testLogger("process-driver"))
        let launch = AgentLaunch(
            runId: "run_user", jobId: "job", hostId: "host", dispatchEpoch: 1, agentType: .datahealth,
            program: "/bin/true", arguments: [], environment: [:], logDirectory: root + "/runs/run_user")
        await #expect(throws: OrchestratorError.self) { try await driver.launch(launch) }
    }
}
