import AgentJobsCore
import Foundation
import Testing

@testable import AgentJobsOrchestrator

@Suite("Agent catalog")
struct AgentCatalogTests {
    @Test("connector agents get one --connector-type per type and an optional --connection-name")
    func connectorArguments() throws {
        let catalog = AgentCatalog()
        let launch = try catalog.launch(
            runId: "run_1", jobId: "job_1", hostId: "host_1", dispatchEpoch: 1, agentType: .lineagePlus,
            parameters: .connectors(connectorTypes: ["snowflake", "dbt"], connectionName: "prod dwh"),
            logDirectory: "/runs/run_1", driver: .docker)
        #expect(launch.program == "agentjobs/lineage-plus:latest")
        #expect(
            launch.arguments == [
                "--connector-type", "snowflake", "--connector-type", "dbt", "--connection-name", "prod dwh",
            ])
        let withoutConnection = try catalog.program(for: .externalMonitors)
            .arguments(for: .connectors(connectorTypes: ["tableau"], connectionName: nil))
        #expect(withoutConnection == ["--connector-type", "tableau"])
    }

    @Test("datahealth gets --file; the process driver runs the configured command with its leading arguments")
    func fileArgumentsAndCommand() throws {
        let catalog = AgentCatalog.sampleAgents(scriptsDirectory: "/opt/agents")
        let launch = try catalog.launch(
            runId: "run_1", jobId: "job_1", hostId: "host_1", dispatchEpoch: 1, agentType: .datahealth,
            parameters: .file(fileName: "orders.csv"), logDirectory: "/runs/run_1", driver: .process)
        #expect(launch.program == "/bin/sh")
        #expect(launch.arguments == ["/opt/agents/datahealth.sh", "--file", "orders.csv"])
        let docker = try catalog.launch(
            runId: "run_1", jobId: "job_1", hostId: "host_1", dispatchEpoch: 1, agentType: .datahealth,
            parameters: .file(fileName: "orders.csv"), logDirectory: "/runs/run_1", driver: .docker)
        #expect(docker.program == "agentjobs/sample-agent:dev")
        #expect(docker.arguments == ["datahealth", "--file", "orders.csv"])
    }

    @Test("persistent agent types and parameters of the wrong shape are refused")
    func refusals() {
        let catalog = AgentCatalog()
        #expect(throws: OrchestratorError.self) {
            try catalog.launch(
                runId: "run_1", jobId: "j", hostId: "h", dispatchEpoch: 1, agentType: .sds,
                parameters: .file(fileName: "x"), logDirectory: "/r", driver: .process)
        }
        #expect(throws: OrchestratorError.self) {
            try catalog.launch(
                runId: "run_1", jobId: "j", hostId: "h", dispatchEpoch: 1, agentType: .datahealth,
                parameters: .connectors(connectorTypes: ["a"], connectionName: nil), logDirectory: "/r",
                driver: .process)
        }
    }

    @Test("a configuration file overrides some fields and keeps the defaults of the others")
    func configurationOverrides() throws {
        let json = """
            {"datahealth": {"image": "registry.local/datahealth:2.1", "command": ["/opt/dh/run"], "fileOption": "--input"}}
            """
        let catalog = try JSONDecoder().decode(AgentCatalog.self, from: Data(json.utf8))
        #expect(catalog.lineagePlus == .standard(.lineagePlus))
        #expect(catalog.datahealth.image == "registry.local/datahealth:2.1")
        #expect(catalog.datahealth.arguments(for: .file(fileName: "a.csv")) == ["--input", "a.csv"])
        let roundTripped = try JSONDecoder().decode(AgentCatalog.self, from: JSONEncoder().encode(catalog))
        #expect(roundTripped == catalog)

        let process = try JSONDecoder().decode(
            ProcessDriverConfiguration.self, from: Data(#"{"stateDirectory": "/var/lib/agentjobs/agents"}"#.utf8))
        #expect(process.logRotation == .default)
        let docker = try JSONDecoder().decode(
            DockerDriverConfiguration.self,
            from: Data(#"{"networkMode": "none", "cpus": 1.5, "logRotation": {"maxFiles": 2}}"#.utf8))
        #expect(docker.socketPath == "/var/run/docker.sock")
        #expect(docker.cpus == 1.5)
        #expect(
            docker.logRotation.maxFiles == 2
                && docker.logRotation.maxFileBytes == LogRotationPolicy.default.maxFileBytes)
        #expect(throws: OrchestratorError.self) {
            try JSONDecoder().decode(LogRotationPolicy.self, from: Data(#"{"maxFiles": 0}"#.utf8))
        }
    }
}

@Suite("Log rotation")
struct LogRotationTests {
    private func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appending(
            path: "agentjobs-logs-\(UUID().uuidString.prefix(8))"
        )
        .path()
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("the writer keeps at most maxFiles files of at most maxFileBytes, newest data in the live file")
    func writerRotates() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/stdout.log"
        let writer = try RotatingLogWriter(path: path, policy: LogRotationPolicy(maxFileBytes: 10, maxFiles: 3))
        try writer.write(Array("aaaaaaaaaa".utf8))
        try writer.write(Array("bbbbbbbbbbcc".utf8))
        try writer.write(Array("ddd".utf8))
        #expect(contents(path) == "ccddd")
        #expect(contents(path + ".1") == "bbbbbbbbbb")
        #expect(contents(path + ".2") == "aaaaaaaaaa")
        try writer.write(Array("eeeeeeeeee".utf8))
        // The oldest file ("a…") fell off the end.
        #expect(contents(path) == "eeeee")
        #expect(contents(path + ".1") == "ccdddeeeee")
        #expect(contents(path + ".2") == "bbbbbbbbbb")
        #expect(!FileManager.default.fileExists(atPath: path + ".3"))
    }

    @Test("rotation in place copies a grown file aside and empties it for the writer that appends to it")
    func inPlaceRotation() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/stderr.log"
        let policy = try LogRotationPolicy(maxFileBytes: 8, maxFiles: 2)
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        defer { try? handle.close() }
        try handle.write(contentsOf: Data("12345678".utf8))
        #expect(try !AgentLogFiles.rotateInPlaceIfNeeded(path, policy: policy))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("9".utf8))
        #expect(try AgentLogFiles.rotateInPlaceIfNeeded(path, policy: policy))
        #expect(contents(path) == "")
        #expect(contents(path + ".1") == "123456789")
        #expect(!FileManager.default.fileExists(atPath: path + ".2"))
    }
}

@Suite("Docker protocol details")
struct DockerProtocolTests {
    private func frame(_ stream: UInt8, _ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        let size = UInt32(payload.count)
        return [
            stream, 0, 0, 0, UInt8(size >> 24), UInt8((size >> 16) & 0xff), UInt8((size >> 8) & 0xff),
            UInt8(size & 0xff),
        ]
            + payload
    }

    @Test("the logs stream is split into stdout and stderr, also when frames arrive in pieces")
    func demultiplexing() {
        let bytes = frame(1, "out one\n") + frame(2, "err\n") + frame(1, "") + frame(1, "out two\n")
        var whole = DockerStreamDemultiplexer()
        let frames = whole.feed(bytes)
        #expect(frames.map(\.stream) == [.stdout, .stderr, .stdout, .stdout])
        #expect(frames.map { String(decoding: $0.payload, as: UTF8.self) } == ["out one\n", "err\n", "", "out two\n"])

        var pieces = DockerStreamDemultiplexer()
        var collected: [DockerStreamDemultiplexer.Frame] = []
        for byte in bytes { collected += pieces.feed([byte]) }
        #expect(collected == frames)
        #expect(pieces.pendingByteCount == 0)
    }

    @Test("API versions compare numerically, so 1.100 is newer than 1.41")
    func apiVersions() {
        #expect(DockerAPIVersion("1.41")! >= DockerEngineClient.minimumAPIVersion)
        #expect(DockerAPIVersion("1.40")! < DockerEngineClient.minimumAPIVersion)
        #expect(DockerAPIVersion("1.100")! > DockerAPIVersion("1.41")!)
        #expect(DockerAPIVersion("banana") == nil)
    }

    @Test(
        "a canceled run ends canceled only when the cancel's stop ended its agent; otherwise the agent's own end counts"
    )
    func cancelOutcome() {
        // Ended by the stop: SIGTERM or SIGKILL, as a signal or as a shell reports them, or unknown.
        for exit in [
            AgentExit(exitCode: 143), AgentExit(exitCode: 137), AgentExit(exitCode: nil),
            AgentExit(exitCode: 137, signal: 9),
        ] {
            #expect(AgentExit.endsCanceled(exit, stopSentForCancel: true), "\(exit)")
        }
        // Ignored SIGTERM and finished (or failed) on its own within the grace.
        #expect(!AgentExit.endsCanceled(AgentExit(exitCode: 0), stopSentForCancel: true))
        #expect(!AgentExit.endsCanceled(AgentExit(exitCode: 3), stopSentForCancel: true))
        // Ended before any stop was sent: its own end, whatever the code.
        #expect(!AgentExit.endsCanceled(AgentExit(exitCode: 143), stopSentForCancel: false))
        #expect(!AgentExit.endsCanceled(AgentExit(exitCode: 0), stopSentForCancel: false))
        // Nothing known about its end: the cancel is what the user asked for.
        #expect(AgentExit.endsCanceled(nil, stopSentForCancel: false))
    }

    @Test("a /proc stat line is read from the last parenthesis, whatever the command name holds")
    func procStatParsing() throws {
        let line =
            "4242 (my (odd) agent) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615"
        let entry = try #require(ProcessTable.parse(line))
        #expect(entry.pid == 4242 && entry.state == "S" && entry.parentPid == 1 && entry.processGroup == 4242)
        #expect(entry.startTime == 987654)
    }
}
