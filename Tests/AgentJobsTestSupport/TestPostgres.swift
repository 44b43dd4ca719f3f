import AgentJobsPostgres
import Foundation
import Logging
import Testing

/// The test PostgreSQL server (``RequiredService/postgres``), and databases of their own for tests.
public enum TestPostgres {
    /// A logger for test stores: warnings and worse.
    public static let logger: Logger = {
        var logger = Logger(label: "test-postgres")
        logger.logLevel = .warning
        return logger
    }()

    /// The server's configuration (its maintenance database), with a small pool: tests run in
    /// parallel, each with a store of its own.
    /// - Throws: In CI without a server; locally, cancels the test.
    public static func server() throws -> PostgresStore.Configuration {
        try configuration(url: RequiredService.postgres.require())
    }

    private static func configuration(url: String) throws -> PostgresStore.Configuration {
        var configuration = try PostgresStore.Configuration(url: url, passwordFile: nil)
        configuration.maximumConnections = 3
        return configuration
    }

    /// A new, empty database on the test server: its URL (for a role's `AGENTJOBS_DATABASE_URL`), its
    /// configuration, and how to drop it.
    public static func freshDatabase(on serverURL: String? = nil) async throws -> (
        url: String, configuration: PostgresStore.Configuration, drop: @Sendable () async -> Void
    ) {
        let serverURL = try serverURL ?? RequiredService.postgres.require()
        let server = try configuration(url: serverURL)
        let name = "agentjobs_test_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))"
        try await PostgresStore.execute("CREATE DATABASE \(name)", on: server, logger: logger)
        var configuration = server
        configuration.database = name
        // The server URL names the maintenance database: the same URL with this database instead.
        guard
            let slash = serverURL.range(
                of: "/", options: [], range: serverURL.range(of: "@")!.upperBound..<serverURL.endIndex)
        else { throw RequiredServiceMissing(message: "AGENTJOBS_TEST_POSTGRES_URL has no database path") }
        let query = serverURL[slash.upperBound...].firstIndex(of: "?").map { String(serverURL[$0...]) } ?? ""
        let url = String(serverURL[..<slash.upperBound]) + name + query
        return (
            url, configuration,
            {
                try? await PostgresStore.execute(
                    "DROP DATABASE IF EXISTS \(name) WITH (FORCE)", on: server, logger: logger)
            }
        )
    }
}

/// A PostgreSQL server of one test's own (`deploy/testenv/postgres.sh` in a temporary directory),
/// for tests that stop the database: the shared test server must stay up for the others.
public final class PrivatePostgresServer: Sendable {
    public let directory: URL
    /// The superuser's URL (maintenance database).
    public let url: String

    /// Creates and starts the server.
    /// - Throws: When the script fails (PostgreSQL missing, not root).
    public init() async throws {
        _ = try RequiredService.postgres.require()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-private-postgres-\(UUID().uuidString.prefix(8))")
        try await Self.script("start", directory)
        url = try String(contentsOf: directory.appendingPathComponent("url"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Stops the server (fast shutdown: sessions are disconnected).
    public func stop() async throws { try await Self.script("stop", directory) }

    /// Starts the stopped server again on the same port.
    public func resume() async throws { try await Self.script("resume", directory) }

    /// Stops every process of the server with SIGSTOP: a server that stalls (or a network that
    /// drops its packets) without closing a connection. ``thaw()`` lets it go on.
    public func freeze() throws { try signalAll(SIGSTOP) }

    /// Lets the processes of a frozen server go on (SIGCONT).
    public func thaw() throws { try signalAll(SIGCONT) }

    /// Sends `signal` to the postmaster, then to each of its children: the postmaster first, so
    /// that it forks no backend the scan misses; the scan runs twice for one forked meanwhile.
    private func signalAll(_ signal: Int32) throws {
        let pidFile = directory.appendingPathComponent("data/postmaster.pid")
        guard let first = try String(contentsOf: pidFile, encoding: .utf8).split(separator: "\n").first,
            let postmaster = Int32(first)
        else { throw RequiredServiceMissing(message: "no postmaster pid in \(pidFile.path)") }
        kill(postmaster, signal)
        for _ in 0..<2 {
            for pid in Self.children(of: postmaster) { kill(pid, signal) }
        }
    }

    /// The processes whose parent is `parent` (from `/proc/<pid>/stat`).
    private static func children(of parent: Int32) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
            guard let pid = Int32(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // After "(comm)": the state, then the parent's pid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == parent ? pid : nil
        }
    }

    /// Stops the server and deletes its files.
    public func remove() async {
        try? thaw()
        try? await Self.script("stop", directory)
        try? FileManager.default.removeItem(at: directory)
    }

    private static var scriptPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/testenv/postgres.sh").path
    }

    /// Runs the script.
    private static func script(_ command: String, _ directory: URL) async throws {
        let process = try ChildProcess(
            name: "postgres.sh \(command)", executable: "/bin/bash", arguments: [scriptPath, command, directory.path],
            environment: ProcessInfo.processInfo.environment)
        let status = try await process.waitForExit(timeout: .seconds(90))
        guard status == 0 else {
            throw RequiredServiceMissing(
                message: "postgres.sh \(command) exited \(status): \(process.capturedOutput.suffix(2000))")
        }
    }
}
