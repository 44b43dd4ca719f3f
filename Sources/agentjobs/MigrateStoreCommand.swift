import AgentJobsPostgres
import AgentJobsStore
import ArgumentParser
import Foundation

/// `agentjobs migrate-store`: the move from the embedded shape to the distributed one — copies a
/// SQLite control plane's state into an empty PostgreSQL database
/// (``PostgresStore/importSQLite(from:into:logger:progress:)`` does the work).
struct MigrateStoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-store",
        abstract: "Copy the control plane's state from a SQLite database into an empty PostgreSQL database.",
        discussion: """
            Stop every process that uses the SQLite file first (agentjobs dev, serve). An older file is brought to
            this build's schema; nothing else in it changes. Everything is copied in one PostgreSQL transaction: on
            any failure the PostgreSQL database stays empty, and one that already holds control-plane rows is
            refused. The password may come from the file AGENTJOBS_DATABASE_PASSWORD_FILE names.
            The dispatch-signing key is a file, not database state: give serve the same key (AGENTJOBS_SIGNING_KEY_FILE,
            e.g. .agentjobs/dispatch-signing.key) so that registered hosts keep accepting its commands.
            """)

    @Option(help: "The SQLite database to copy: sqlite:PATH (agentjobs dev keeps it in .agentjobs/agentjobs.sqlite).")
    var from: String

    @Option(help: "The empty PostgreSQL database to copy into: postgres://USER@HOST:5432/DATABASE.")
    var to: String

    func run() async throws {
        // Neither value is repeated in a message: a URL given in the wrong place may hold a password.
        guard case .sqlite(let path)? = try? DatabaseURL(parsing: from) else {
            throw CLIError("--from must be sqlite:PATH, the SQLite database to copy")
        }
        guard case .postgres(let url)? = try? DatabaseURL(parsing: to) else {
            throw CLIError("--to must be postgres://USER@HOST:PORT/DATABASE, the empty PostgreSQL database to fill")
        }
        let settings = try Settings.load(configFile: nil)
        let summary: PostgresStore.ImportSummary
        let target: PostgresStore.Configuration
        do {
            target = try PostgresStore.Configuration(
                url: url, passwordFile: settings["AGENTJOBS_DATABASE_PASSWORD_FILE"])
            summary = try await PostgresStore.importSQLite(
                from: path, into: target, logger: makeLogger("agentjobs.migrate-store")
            ) { table, rows in
                FileHandle.standardError.write(Data("copied \(Self.count(rows)) \(table)\n".utf8))
            }
        } catch let error as StoreError {
            throw CLIError(error.message)
        }
        for left in summary.notCopied {
            print("not copied: \(left.what) (\(Self.count(left.rows)) rows): \(left.reason)")
        }
        let tables = summary.copied.map { "\(Self.count($0.rows)) \($0.table)" }.joined(separator: ", ")
        print("copied \(Self.count(summary.copiedRows)) rows from sqlite:\(path) into \(target): \(tables)")
    }

    /// A count with thousands separators (12,345), whatever the locale.
    static func count(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { grouped.append(",") }
            grouped.append(digit)
        }
        return value < 0 ? "-" + grouped : grouped
    }
}
