import CSQLite
import Foundation

/// Moves runs through their lifecycle by writing the embedded store's database directly — a stand-in
/// for the status aggregator, which does not exist yet (without it every run stays `queued`).
///
/// It writes exactly the columns the aggregator will own (status, start/finish times, exit code,
/// error summary), in the store's own units (milliseconds since the epoch), so the console is tested
/// on runs that look like real ones: running, failed with a `lineage-plus` summary, canceled after a
/// cancel request. SQLite in WAL mode lets this second writer work beside the running `agentjobs dev`.
///
/// TODO(orchestrator): once `agentjobs dev` runs the local orchestrator and aggregator, drive these
/// states with real agents (the process driver) and delete this fixture.
struct RunStateFixture {
    let databasePath: String

    init(dataDir: URL) {
        databasePath = dataDir.appendingPathComponent("agentjobs.sqlite").path
    }

    /// The run was launched on its host (`RunStarted`). A start in the past moves the queue time
    /// back too (to 3 s before the start), so the timeline stays in order.
    func markStarted(_ runId: String, at date: Date = Date()) throws {
        try execute(
            "UPDATE runs SET status = 'running', started_at = ?, queued_at = MIN(queued_at, ?) WHERE id = ? AND status = 'queued'",
            [.int(date.ms), .int(date.addingTimeInterval(-3).ms), .text(runId)])
    }

    /// The run ended (`RunFailed`, `RunSucceeded`, `RunCanceled`, `RunTimedOut`).
    func markFinished(_ runId: String, status: String, exitCode: Int?, errorSummary: String?, at date: Date = Date())
        throws
    {
        try execute(
            """
            UPDATE runs SET status = ?, finished_at = ?, exit_code = ?, error_summary = ?,
                started_at = COALESCE(started_at, ?)
            WHERE id = ? AND status IN ('queued', 'running')
            """,
            [
                .text(status), .int(date.ms), exitCode.map { .int(Int64($0)) } ?? .null,
                errorSummary.map { .text($0) } ?? .null,
                .int(date.addingTimeInterval(-1).ms), .text(runId),
            ])
    }

    enum Value {
        case int(Int64)
        case text(String)
        case null
    }

    private func execute(_ sql: String, _ values: [Value]) throws {
        var db: OpaquePointer?
        guard sqlite3_open_v2(databasePath, &db, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK, let db else {
            throw FixtureError(message: "cannot open \(databasePath)")
        }
        defer { sqlite3_close_v2(db) }
        sqlite3_busy_timeout(db, 10_000)
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw FixtureError(message: "prepare failed: \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(statement) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            switch value {
            case .int(let number): sqlite3_bind_int64(statement, index, number)
            case .text(let text): sqlite3_bind_text(statement, index, text, -1, transient)
            case .null: sqlite3_bind_null(statement, index)
            }
        }
        guard sqlite3_step(statement) == SQLITE_DONE else {
            throw FixtureError(message: "update failed: \(String(cString: sqlite3_errmsg(db)))")
        }
        guard sqlite3_changes(db) == 1 else {
            throw FixtureError(message: "expected to change one run, changed \(sqlite3_changes(db)): \(sql)")
        }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

extension Date {
    fileprivate var ms: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }
}
