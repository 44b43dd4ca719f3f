import AgentJobsTestSupport
import Foundation
import Testing

/// A misconfigured role stops at start-up with one clear line that names the setting.
@Suite("Start-up errors")
struct StartupErrorTests {
    static func start(_ arguments: [String], _ settings: [String: String]) async throws -> (Int32, String) {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AGENTJOBS_") }
        environment.merge(settings) { $1 }
        let process = try ChildProcess(
            name: "agentjobs \(arguments.joined(separator: " "))", executable: EndToEnd.binary, arguments: arguments,
            environment: environment)
        let status = try await process.waitForExit(timeout: .seconds(60))
        return (status, process.capturedOutput)
    }

    @Test(
        "each misconfiguration names its setting in one line",
        arguments: [
            (["serve"], ["AGENTJOBS_KAFKA_BROKERS": "127.0.0.1:9"], "AGENTJOBS_DATABASE_URL is not set"),
            (
                ["serve"],
                [
                    "AGENTJOBS_DATABASE_URL": "postgres://u:secret@db/agentjobs?sslmode=sometimes",
                    "AGENTJOBS_KAFKA_BROKERS": "127.0.0.1:9",
                ],
                "AGENTJOBS_DATABASE_URL: "
            ),
            (
                ["aggregate"], ["AGENTJOBS_DATABASE_URL": "sqlite:/tmp/agentjobs-startup-test.sqlite"],
                "AGENTJOBS_KAFKA_BROKERS is not set"
            ),
            (
                ["serve"],
                [
                    "AGENTJOBS_DATABASE_URL": "sqlite:/tmp/x.sqlite", "AGENTJOBS_KAFKA_BROKERS": "127.0.0.1:9",
                    "AGENTJOBS_HTTP_ADDRESS": "nope",
                ], "AGENTJOBS_HTTP_ADDRESS: 'nope' is not HOST:PORT"
            ),
            (
                ["serve"],
                [
                    "AGENTJOBS_DATABASE_URL": "sqlite:/tmp/x.sqlite", "AGENTJOBS_KAFKA_BROKERS": "127.0.0.1:9",
                    "AGENTJOBS_RUN_RETENTION_DAYS": "-1",
                ], "AGENTJOBS_RUN_RETENTION_DAYS: '-1' is not a whole number from 0 to 36500"
            ),
            (
                ["orchestrate", "--data-dir", "/tmp/agentjobs-no-such-host"],
                ["AGENTJOBS_KAFKA_BROKERS": "127.0.0.1:9"], "no host identity at"
            ),
        ])
    func misconfiguration(arguments: [String], settings: [String: String], expected: String) async throws {
        let (status, output) = try await Self.start(arguments, settings)
        #expect(status != 0)
        let lines = output.split(separator: "\n").filter { !$0.contains("librdkafka") && !$0.contains("CONFWARN") }
        #expect(lines.contains { $0.contains(expected) }, "expected a line with '\(expected)', got:\n\(output)")
        #expect(!output.contains("secret"), "a database password was printed:\n\(output)")
    }

    @Test("an unreachable broker stops serve with a line naming AGENTJOBS_KAFKA_BROKERS")
    func unreachableBroker() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-startup-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (status, output) = try await Self.start(
            ["serve"],
            [
                "AGENTJOBS_DATABASE_URL": "sqlite:" + directory.appendingPathComponent("db.sqlite").path,
                "AGENTJOBS_DATA_DIR": directory.path, "AGENTJOBS_KAFKA_BROKERS": "127.0.0.1:9",
                "AGENTJOBS_LOG_LEVEL": "critical",
            ])
        #expect(status != 0)
        #expect(output.contains("AGENTJOBS_KAFKA_BROKERS: cannot set up topics on 127.0.0.1:9"), "\(output)")
    }
}

extension StartupErrorTests {
    @Test("an agent catalog that does not decode stops dev with the file, the value's path and what was expected")
    func badAgentCatalog() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-catalog-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let catalog = directory.appendingPathComponent("catalog.json")
        try Data(#"{"datahealth": {"image": "x", "command": "/opt/run"}}"#.utf8).write(to: catalog)
        let (status, output) = try await Self.start(
            ["dev", "--data-dir", directory.appendingPathComponent("data").path, "--http-port", "0"],
            ["AGENTJOBS_AGENT_CATALOG": catalog.path, "AGENTJOBS_LOG_LEVEL": "critical"])
        #expect(status != 0)
        #expect(
            output.contains(
                "\(catalog.path) is not an agent catalog: datahealth.command: expected a list (a JSON array)"),
            "\(output)")
        #expect(!output.contains("DecodingError"), "\(output)")
    }
}
