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
        var configuration = try PostgresStore.Configuration(url: RequiredService.postgres.require(), passwordFile: nil)
        configuration.maximumConnections = 3
        return configuration
    }

    /// A new, empty database on the test server: its URL (for a role's `AGENTJOBS_DATABASE_URL`), its
    /// configuration, and how to drop it.
    public static func freshDatabase() async throws -> (
        url: String, configuration: PostgresStore.Configuration, drop: @Sendable () async -> Void
    ) {
        let server = try server()
        let name = "agentjobs_test_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))"
        try await PostgresStore.execute("CREATE DATABASE \(name)", on: server, logger: logger)
        var configuration = server
        configuration.database = name
        let serverURL = try RequiredService.postgres.require()
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
