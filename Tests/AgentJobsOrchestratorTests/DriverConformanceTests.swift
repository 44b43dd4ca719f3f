import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

@testable import AgentJobsOrchestrator

/// The container-driver contract (``AgentDriver``), run against every driver. The docker cases
/// need a daemon (`AGENTJOBS_TEST_DOCKER_SOCKET`, see ``DockerTestEnvironment``).
@Suite("Driver conformance")
struct DriverConformanceTests {
    @Test(
        "the docker tier's daemon answers and speaks Engine API 1.41 or newer",
        .enabled(if: DockerTestEnvironment.shouldRun, DockerTestEnvironment.skipReason))
    func dockerDaemonIsUsable() async throws {
        let socketPath = try DockerTestEnvironment.requireSocket()
        let driver = DockerDriver(
            configuration: DockerDriverConfiguration(socketPath: socketPath), logger: testLogger("docker-driver"))
        let version = try #require(DockerAPIVersion(try await driver.checkDaemon()))
        #expect(version >= DockerEngineClient.minimumAPIVersion)
    }

    @Test(
        "a succeeding agent exits 0, its stdout is captured and nothing of it remains", arguments: DriverKind.selected)
    func succeedingAgent(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            let handle = try await fixture.driver.launch(fixture.launch(.datahealth, .file(fileName: "orders.csv")))
            #expect(handle.wasRunning)
            let exit = try await fixture.driver.wait(handle)
            #expect(exit == AgentExit(exitCode: 0))
            #expect(contents(handle.stdoutPath).contains("datahealth: checked orders.csv: ok"))
            try await fixture.driver.release(handle)
            #expect(try await !fixture.somethingRemains(of: handle))
            #expect(try await !fixture.driver.list().contains { $0.runId == handle.runId })
        }
    }

    @Test(
        "an ended agent is listed, with its exit, until it is released (a restart between its end and the journal learns it)",
        arguments: DriverKind.selected)
    func endedAgentKeptUntilReleased(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            let handle = try await fixture.driver.launch(fixture.launch(.datahealth, .file(fileName: "bad-fail.csv")))
            let exit = try await fixture.driver.wait(handle)
            #expect(exit.exitCode == 2)
            let stderrBefore = contents(handle.stderrPath)

            let restarted = fixture.restartedDriver()
            let found = try await restarted.list().filter { $0.runId == handle.runId }
            try #require(found.count == 1)
            #expect(!found[0].wasRunning)
            #expect(try await restarted.wait(found[0]).exitCode == 2)
            #expect(try await restarted.stop(found[0], grace: .seconds(1)).alreadyEnded)
            #expect(stderrBefore.contains("ERROR datahealth: check of bad-fail.csv failed"))

            try await restarted.release(found[0])
            try await restarted.release(found[0])
            #expect(try await !restarted.list().contains { $0.runId == handle.runId })
            #expect(try await !fixture.somethingRemains(of: handle))
            #expect(contents(handle.stderrPath) == stderrBefore, "the output was collected twice")
        }
    }

    @Test("a failing agent's exit code and stderr are captured", arguments: DriverKind.selected)
    func failingAgent(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            let handle = try await fixture.driver.launch(fixture.launch(.datahealth, .file(fileName: "bad-fail.csv")))
            let exit = try await fixture.driver.wait(handle)
            #expect(exit.exitCode == 2)
            #expect(!exit.killedBySignal)
            #expect(contents(handle.stderrPath).contains("ERROR datahealth: check of bad-fail.csv failed"))
            #expect(!contents(handle.stdoutPath).contains("ERROR"))
        }
    }

    @Test(
        "a lineage-plus connection that fails leaves its own log in the run's log directory",
        arguments: DriverKind.selected)
    func lineagePlusConnectionLog(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            let launch = try fixture.launch(
                .lineagePlus, .connectors(connectorTypes: ["jdbc", "fail-postgres"], connectionName: "warehouse"))
            #expect(
                launch.arguments.suffix(6) == [
                    "--connector-type", "jdbc", "--connector-type", "fail-postgres", "--connection-name", "warehouse",
                ])
            let handle = try await fixture.driver.launch(launch)
            let exit = try await fixture.driver.wait(handle)
            #expect(exit.exitCode == 1)
            let log = contents(launch.logDirectory + "/warehouse.log")
            let top = ErrorSummary.topErrorLines(log.split(separator: "\n").map(String.init))
            // Three query errors differing only in timestamp and id count as one, then the auth error.
            #expect(top.map(\.count) == [3, 1])
            #expect(top.first?.line.contains("relation \"orders\" does not exist") == true)
            #expect(contents(handle.stderrPath).contains("connection warehouse failed"))
        }
    }

    @Test(
        "stopping an agent that ignores SIGTERM kills it after the grace period and leaves nothing",
        arguments: DriverKind.selected)
    func stopAfterGrace(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            let launch = try fixture.launch(.datahealth, .file(fileName: "ignore-term"))
            let handle = try await fixture.driver.launch(launch)
            // The agent says when its trap is set; a SIGTERM before that would end it at once.
            let marker = launch.logDirectory + "/ignoring-term"
            #expect(try await eventually { FileManager.default.fileExists(atPath: marker) })
            let grace = Duration.seconds(1)
            let started = ContinuousClock.now
            let outcome = try await fixture.driver.stop(handle, grace: grace)
            #expect(ContinuousClock.now - started >= grace)
            #expect(outcome.killed)
            #expect(!outcome.alreadyEnded)
            #expect(outcome.exit.signal == SIGKILL)
            try await fixture.driver.release(handle)
            #expect(try await !fixture.somethingRemains(of: handle))
            #expect(try await !fixture.driver.list().contains { $0.runId == handle.runId })
            // Stopping again, or waiting, reports the same end instead of failing.
            #expect(try await fixture.driver.stop(handle, grace: grace).exit == outcome.exit)
            #expect(try await fixture.driver.wait(handle) == outcome.exit)
        }
    }

    @Test("a restarted driver finds the running agent and can wait for it", arguments: DriverKind.selected)
    func reattachAfterRestart(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            let launch = try fixture.launch(.datahealth, .file(fileName: "wait-for-go"))
            let original = try await fixture.driver.launch(launch)

            let restarted = fixture.restartedDriver()
            let found = try await restarted.list().filter { $0.runId == original.runId }
            try #require(found.count == 1)
            let handle = found[0]
            #expect(handle.id == original.id)
            #expect(handle.wasRunning)
            #expect(handle.jobId == "job_test" && handle.hostId == fixture.hostId && handle.dispatchEpoch == 3)
            #expect(handle.agentType == .datahealth)
            #expect(handle.logDirectory == launch.logDirectory)
            // Looked up by its run alone, as a launch retry does.
            let single = try await restarted.agent(ofRun: original.runId)
            #expect(single?.id == original.id && single?.wasRunning == true)
            #expect(
                try await restarted.agent(ofRun: try fixture.launch(.datahealth, .file(fileName: "x")).runId) == nil)

            #expect(FileManager.default.createFile(atPath: launch.logDirectory + "/go", contents: nil))
            let exit = try await restarted.wait(handle)
            #expect(exit.exitCode == 0)
            #expect(contents(handle.stdoutPath).contains("checked wait-for-go: ok"))
            try await restarted.release(handle)
            #expect(try await !fixture.somethingRemains(of: handle))
        }
    }

    @Test("a missing image or command is a typed agentNotFound error", arguments: DriverKind.selected)
    func missingAgent(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            var launch = try fixture.launch(.datahealth, .file(fileName: "orders.csv"))
            launch.program = kind == .docker ? "agentjobs/no-such-agent:missing" : "/nonexistent/agentjobs-agent"
            let error = await #expect(throws: OrchestratorError.self) { try await fixture.driver.launch(launch) }
            #expect(error?.code == .agentNotFound)
            #expect(try await !fixture.driver.list().contains { $0.runId == launch.runId })
        }
    }

    @Test("agents launched while 10 others are waited on start at once", arguments: DriverKind.selected)
    func launchWhileManyAreWaitedOn(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            // Each running agent is waited on (with the Docker driver, a request held open to the
            // daemon); a launch must not queue behind those waits.
            var handles: [AgentHandle] = []
            var launches: [AgentLaunch] = []
            for _ in 0..<10 {
                let launch = try fixture.launch(.datahealth, .file(fileName: "wait-for-go"))
                launches.append(launch)
                handles.append(try await fixture.driver.launch(launch))
            }
            let driver = fixture.driver
            try await withThrowingTaskGroup(of: Void.self) { group in
                for handle in handles {
                    group.addTask {
                        let exit = try await driver.wait(handle)
                        #expect(exit.exitCode == 0)
                    }
                }
                try await Task.sleep(for: .seconds(1))
                let started = ContinuousClock.now
                let launch = try fixture.launch(.datahealth, .file(fileName: "orders.csv"))
                let extra = try await driver.launch(launch)
                #expect(ContinuousClock.now - started < .seconds(15), "the launch waited behind the waits")
                let extraExit = try await driver.wait(extra)
                #expect(extraExit.exitCode == 0)
                try await driver.release(extra)
                for launch in launches {
                    #expect(FileManager.default.createFile(atPath: launch.logDirectory + "/go", contents: nil))
                }
                try await group.waitForAll()
            }
            for handle in handles { try await driver.release(handle) }
        }
    }

    @Test("launching a run that already has an agent is refused", arguments: DriverKind.selected)
    func duplicateLaunch(kind: DriverKind) async throws {
        try await DriverFixture.run(kind) { fixture in
            let launch = try fixture.launch(.datahealth, .file(fileName: "wait-for-go"))
            let handle = try await fixture.driver.launch(launch)
            let error = await #expect(throws: OrchestratorError.self) { try await fixture.driver.launch(launch) }
            #expect(error?.code == .alreadyLaunched)
            #expect(FileManager.default.createFile(atPath: launch.logDirectory + "/go", contents: nil))
            #expect(try await fixture.driver.wait(handle).exitCode == 0)
        }
    }
}

/// An orchestrator killed in the middle of a launch: the driver must neither lose an agent that
/// started (a restart would launch the run twice) nor keep a launch that never happened.
@Suite("Interrupted launches")
struct InterruptedLaunchTests {
    @Test("process: an agent started before its record was complete is found by its run id and adopted")
    func processAgentAdopted() async throws {
        try await DriverFixture.run(.process) { fixture in
            let launch = try fixture.launch(.datahealth, .file(fileName: "wait-for-go"))
            let original = try await fixture.driver.launch(launch)
            try Self.makePending(fixture, original)

            let found = try await fixture.restartedDriver().list().filter { $0.runId == launch.runId }
            try #require(found.count == 1)
            #expect(found[0].wasRunning)
            #expect(found[0].processGroup == original.processGroup)
            #expect(FileManager.default.createFile(atPath: launch.logDirectory + "/go", contents: nil))
            let restarted = fixture.restartedDriver()
            #expect(try await restarted.wait(found[0]).exitCode == 0)
            try await restarted.release(found[0])
        }
    }

    @Test("process: an agent that started and ended before its record was complete keeps its exit")
    func processAgentEndedKept() async throws {
        try await DriverFixture.run(.process) { fixture in
            let launch = try fixture.launch(.datahealth, .file(fileName: "bad-fail.csv"))
            let original = try await fixture.driver.launch(launch)
            #expect(try await fixture.driver.wait(original).exitCode == 2)
            try Self.makePending(fixture, original)

            let restarted = fixture.restartedDriver()
            let found = try await restarted.list().filter { $0.runId == launch.runId }
            try #require(found.count == 1)
            #expect(!found[0].wasRunning)
            #expect(try await restarted.wait(found[0]).exitCode == 2)
        }
    }

    @Test("process: a launch that never started its agent is forgotten, so the run can be launched")
    func processNeverStartedForgotten() async throws {
        try await DriverFixture.run(.process) { fixture in
            let launch = try fixture.launch(.datahealth, .file(fileName: "orders.csv"))
            let handle = AgentHandle(
                id: "", runId: launch.runId, jobId: launch.jobId, hostId: launch.hostId,
                dispatchEpoch: launch.dispatchEpoch, agentType: launch.agentType, logDirectory: launch.logDirectory,
                wasRunning: true)
            try FileManager.default.createDirectory(atPath: fixture.root + "/state", withIntermediateDirectories: true)
            try Self.write(ProcessDriver.Record(handle: handle, pid: 0, startTime: 0), fixture)

            let restarted = fixture.restartedDriver()
            #expect(try await !restarted.list().contains { $0.runId == launch.runId })
            let relaunched = try await restarted.launch(launch)
            #expect(try await restarted.wait(relaunched).exitCode == 0)
            try await restarted.release(relaunched)
        }
    }

    @Test("process: a record created but never written (killed between the two) is removed, so the run can be launched")
    func processEmptyRecordForgotten() async throws {
        try await DriverFixture.run(.process) { fixture in
            let launch = try fixture.launch(.datahealth, .file(fileName: "orders.csv"))
            try FileManager.default.createDirectory(atPath: fixture.root + "/state", withIntermediateDirectories: true)
            let record = fixture.root + "/state/" + launch.runId + ".json"
            #expect(FileManager.default.createFile(atPath: record, contents: Data()))

            let restarted = fixture.restartedDriver()
            // Another run's lookup leaves it alone (its launch may be under way).
            let other = try fixture.launch(.datahealth, .file(fileName: "orders.csv"))
            #expect(try await restarted.agent(ofRun: other.runId) == nil)
            #expect(FileManager.default.fileExists(atPath: record))
            #expect(try await !restarted.list().contains { $0.runId == launch.runId })
            #expect(!FileManager.default.fileExists(atPath: record))
            let relaunched = try await restarted.launch(launch)
            #expect(try await restarted.wait(relaunched).exitCode == 0)
            try await restarted.release(relaunched)
        }
    }

    @Test(
        "docker: a container created but never started is removed when listed, so the run is launched once",
        .enabled(if: DockerTestEnvironment.shouldRun, DockerTestEnvironment.skipReason))
    func dockerCreatedNeverStarted() async throws {
        try await DriverFixture.run(.docker) { fixture in
            let driver = try #require(fixture.dockerDriver)
            let launch = try fixture.launch(.datahealth, .file(fileName: "wait-for-go"))
            // Docker Engine API field names, as the engine spells them.
            // swift-format-ignore: AlwaysUseLowerCamelCase
            struct Create: Encodable {
                struct Host: Encodable { var Binds: [String] }
                var Image: String
                var Cmd: [String]
                var Env: [String]
                var Labels: [String: String]
                var HostConfig: Host
            }
            let labels = [
                DockerDriver.Labels.managed: "true", DockerDriver.Labels.runId: launch.runId,
                DockerDriver.Labels.jobId: launch.jobId, DockerDriver.Labels.hostId: launch.hostId,
                DockerDriver.Labels.dispatchEpoch: "3", DockerDriver.Labels.agentType: launch.agentType.rawValue,
                DockerDriver.Labels.logDirectory: launch.logDirectory,
            ]
            try FileManager.default.createDirectory(atPath: launch.logDirectory, withIntermediateDirectories: true)
            let inside = driver.configuration.containerLogDirectory
            let created = try await driver.engine.send(
                .POST, path: "/containers/create", query: [("name", "agentjobs-\(launch.runId)")],
                json: Create(
                    Image: launch.program, Cmd: launch.arguments, Env: ["AGENTJOBS_LOG_DIR=\(inside)"], Labels: labels,
                    HostConfig: .init(Binds: ["\(launch.logDirectory):\(inside)"])))
            #expect(created.status == 201)
            // Another run's lookup leaves it alone (its launch may be under way); its own removes it.
            let other = try fixture.launch(.datahealth, .file(fileName: "orders.csv"))
            #expect(try await driver.agent(ofRun: other.runId) == nil)
            #expect(try await !driver.containers(labels: ["\(DockerDriver.Labels.runId)=\(launch.runId)"]).isEmpty)
            #expect(try await driver.agent(ofRun: launch.runId) == nil)
            #expect(try await driver.containers(labels: ["\(DockerDriver.Labels.runId)=\(launch.runId)"]).isEmpty)

            #expect(try await !driver.list().contains { $0.runId == launch.runId })
            #expect(try await driver.containers(labels: ["\(DockerDriver.Labels.runId)=\(launch.runId)"]).isEmpty)
            #expect(!FileManager.default.fileExists(atPath: launch.logDirectory + "/launches"))
            let relaunched = try await driver.launch(launch)
            #expect(FileManager.default.createFile(atPath: launch.logDirectory + "/go", contents: nil))
            #expect(try await driver.wait(relaunched).exitCode == 0)
            #expect(contents(launch.logDirectory + "/launches").split(separator: "\n").count == 1)
            try await driver.release(relaunched)
            #expect(try await driver.containers(labels: ["\(DockerDriver.Labels.runId)=\(launch.runId)"]).isEmpty)
        }
    }

    /// Rewrites a process agent's record as the driver writes it just before the spawn.
    static func makePending(_ fixture: DriverFixture, _ handle: AgentHandle) throws {
        var pending = handle
        pending.id = ""
        pending.processGroup = nil
        try write(ProcessDriver.Record(handle: pending, pid: 0, startTime: 0), fixture)
    }

    static func write(_ record: ProcessDriver.Record, _ fixture: DriverFixture) throws {
        try JSONEncoder().encode(record).write(
            to: URL(fileURLWithPath: fixture.root + "/state/\(record.handle.runId).json"))
    }
}
