import AgentJobsCore
import CSQLite
import Foundation

/// A bare SQLite connection for the baseline: the C API with prepared statements and nothing else.
/// Used by one thread at a time.
final class RawSQLite {
    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { "SQLite: \(message)" }
    }

    private let handle: OpaquePointer
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    init(path: String) throws {
        var handle: OpaquePointer?
        guard
            sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
                == SQLITE_OK,
            let handle
        else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw Failure(message: "cannot open \(path): \(message)")
        }
        // A store that just closed may still be checkpointing: wait for it rather than fail.
        sqlite3_busy_timeout(handle, 10_000)
        self.handle = handle
    }

    deinit { sqlite3_close_v2(handle) }

    func execute(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &errorMessage) == SQLITE_OK else {
            let message = errorMessage.map { String(cString: $0) } ?? lastError
            sqlite3_free(errorMessage)
            throw Failure(message: "\(message) in \(sql)")
        }
    }

    /// The first column of the first row of `sql`, as an integer.
    func scalar(_ sql: String) throws -> Int64 {
        let statement = try prepare(sql)
        defer { sqlite3_finalize(statement) }
        guard sqlite3_step(statement) == SQLITE_ROW else { throw Failure(message: "\(lastError) in \(sql)") }
        return sqlite3_column_int64(statement, 0)
    }

    func prepare(_ sql: String) throws -> OpaquePointer {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw Failure(message: "\(lastError) in \(sql)")
        }
        return statement
    }

    /// Binds `values` (String, Int64 or nil) to `statement`, steps it once to completion and resets it.
    func run(_ statement: OpaquePointer, _ values: [RawValue]) throws {
        bind(statement, values)
        let status = sqlite3_step(statement)
        sqlite3_reset(statement)
        guard status == SQLITE_DONE else { throw Failure(message: lastError) }
    }

    private func bind(_ statement: OpaquePointer, _ values: [RawValue]) {
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            switch value {
            case .text(let text): sqlite3_bind_text(statement, index, text, -1, Self.transient)
            case .integer(let integer): sqlite3_bind_int64(statement, index, integer)
            case .null: sqlite3_bind_null(statement, index)
            }
        }
    }

    /// Binds `values`, steps `statement` once and returns the first column of its row as an integer.
    /// - Throws: ``Failure`` when it returns no row.
    func first(_ statement: OpaquePointer, _ values: [RawValue]) throws -> Int64 {
        defer { sqlite3_reset(statement) }
        bind(statement, values)
        guard sqlite3_step(statement) == SQLITE_ROW else { throw Failure(message: "no row: \(lastError)") }
        return sqlite3_column_int64(statement, 0)
    }

    enum RawValue {
        case text(String)
        case integer(Int64)
        case null
    }

    private var lastError: String { String(cString: sqlite3_errmsg(handle)) }
}

/// Inserts into a table shaped like the store's `runs` table straight through the SQLite C API:
/// the ceiling for what the store can do on this disk.
enum RawSQLiteBaseline {
    /// One measurement of raw inserts.
    struct Figure: Codable, Sendable {
        var rows: Int
        var rowsPerTransaction: Int
        var seconds: Double
        var rowsPerSecond: Double
    }

    /// The `runs` columns the store writes on a trigger, with a unique run id (the store's table has
    /// more indexes; this is deliberately the cheaper shape).
    static let schema = """
        CREATE TABLE runs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            job_id TEXT NOT NULL,
            job_name TEXT NOT NULL,
            job_version INTEGER NOT NULL,
            host_id TEXT NOT NULL,
            agent_type TEXT NOT NULL,
            parameters TEXT NOT NULL,
            timeout_seconds INTEGER NOT NULL,
            queue_timeout_seconds INTEGER NOT NULL,
            status TEXT NOT NULL,
            trigger TEXT NOT NULL,
            scheduled_at INTEGER,
            queued_at INTEGER NOT NULL,
            dispatch_epoch INTEGER NOT NULL
        );
        """

    static let insert = """
        INSERT INTO runs (id, job_id, job_name, job_version, host_id, agent_type, parameters, timeout_seconds,
                          queue_timeout_seconds, status, trigger, scheduled_at, queued_at, dispatch_epoch)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    /// Inserts rows into a fresh database at `path` (WAL, synchronous=FULL), `rowsPerTransaction`
    /// at a time, until `rows` are written or `timeLimit` has passed (checked between transactions).
    /// - Throws: ``RawSQLite/Failure``.
    static func measure(path: String, rows: Int, rowsPerTransaction: Int, timeLimit: Duration) throws -> Figure {
        let database = try RawSQLite(path: path)
        try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        try database.execute(schema)
        let insert = try database.prepare(Self.insert)
        let begin = try database.prepare("BEGIN IMMEDIATE")
        let commit = try database.prepare("COMMIT")
        defer { for statement in [insert, begin, commit] { sqlite3_finalize(statement) } }
        // Row values are made before the clock starts: this measures SQLite, not id generation.
        var ids = FastIdentifiers()
        let values = (0..<rows).map { index -> [RawSQLite.RawValue] in
            [
                .text(ids.make("run")), .text(ids.make("job")), .text("bench-\(index)"), .integer(1),
                .text("host_benchhost0000000000000"), .text("datahealth"),
                .text(#"{"fileName":"bench-\#(index).csv"}"#),
                .integer(3600), .integer(600), .text("queued"), .text("api"), .null,
                .integer(Int64(Date().timeIntervalSince1970 * 1000)), .integer(1),
            ]
        }
        let clock = ContinuousClock()
        let start = clock.now
        var written = 0
        while written < rows, start.duration(to: clock.now) < timeLimit {
            let batch = min(rowsPerTransaction, rows - written)
            try database.run(begin, [])
            for index in written..<(written + batch) { try database.run(insert, values[index]) }
            try database.run(commit, [])
            written += batch
        }
        let seconds = start.duration(to: clock.now).seconds
        guard try database.scalar("SELECT count(*) FROM runs") == written else {
            throw RawSQLite.Failure(message: "row count does not match the rows inserted")
        }
        return Figure(
            rows: written, rowsPerTransaction: rowsPerTransaction, seconds: seconds,
            rowsPerSecond: Double(written) / seconds)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// Identifiers shaped like ``AgentJobsCore/Identifier`` (prefix, 20 random base-36 characters) from
/// a SplitMix64 generator: `Identifier.make` reads the system generator once per character, which
/// would make preparing the baseline's rows slower than measuring them.
struct FastIdentifiers {
    private static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
    private var state = UInt64.random(in: .min ... .max)

    mutating func make(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8) + [UInt8(ascii: "_")]
        for _ in 0..<20 { bytes.append(Self.alphabet[Int(next() % 36)]) }
        return String(decoding: bytes, as: UTF8.self)
    }

    private mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// What applying run events costs SQLite alone on the store's own schema: per event, the read of
/// its run's row by id and one `UPDATE` of the run's status columns, through the C API with nothing
/// else — no transport, no authentication, no records to publish: the ceiling for the aggregator
/// on this disk. Every run gets its `started` in a first pass and its `succeeded` in a second, so
/// each event is its own write, as when a run's events arrive in different batches (the aggregator
/// folds a run's events of one batch into one write, which the benchmark's backlog allows).
enum RawSQLiteStatusUpdates {
    struct Figure: Codable, Sendable {
        var events: Int
        var eventsPerTransaction: Int
        var seconds: Double
        var eventsPerSecond: Double
    }

    /// Moves the queued runs `runIds` of the store database at `path` (a copy: this changes it) to
    /// running, then to succeeded, `eventsPerTransaction` runs per transaction, with the store's
    /// settings (WAL, synchronous=FULL, its page cache), until done or `timeLimit` has passed.
    /// - Throws: ``RawSQLite/Failure``.
    static func measure(path: String, runIds: [String], eventsPerTransaction: Int, timeLimit: Duration) throws
        -> Figure
    {
        let database = try RawSQLite(path: path)
        try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-65536;")
        let read = try database.prepare("SELECT seq, status, dispatch_epoch, host_id FROM runs WHERE id = ?")
        let update = try database.prepare(
            "UPDATE runs SET status = ?, started_at = ?, finished_at = ?, exit_code = ?, error_summary = ? WHERE seq = ?"
        )
        let begin = try database.prepare("BEGIN IMMEDIATE")
        let commit = try database.prepare("COMMIT")
        defer { for statement in [read, update, begin, commit] { sqlite3_finalize(statement) } }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let passes: [[RawSQLite.RawValue]] = [
            [.text("running"), .integer(now), .null, .null, .null],
            [.text("succeeded"), .integer(now), .integer(now), .integer(0), .null],
        ]
        let perTransaction = max(1, eventsPerTransaction)
        let clock = ContinuousClock()
        let start = clock.now
        var done = 0
        passing: for values in passes {
            var next = 0
            while next < runIds.count {
                guard start.duration(to: clock.now) < timeLimit else { break passing }
                let batch = runIds[next..<min(next + perTransaction, runIds.count)]
                try database.run(begin, [])
                for id in batch {
                    let sequence = try database.first(read, [.text(id)])
                    try database.run(update, values + [.integer(sequence)])
                }
                try database.run(commit, [])
                next += batch.count
                done += batch.count
            }
        }
        let seconds = start.duration(to: clock.now).seconds
        let changed =
            try database.scalar("SELECT count(*) FROM runs WHERE status IN ('running', 'succeeded')")
            + database.scalar("SELECT count(*) FROM runs WHERE status = 'succeeded'")
        guard changed == done else {
            throw RawSQLite.Failure(message: "\(changed) status changes in the database, \(done) made")
        }
        return Figure(
            events: done, eventsPerTransaction: perTransaction, seconds: seconds,
            eventsPerSecond: Double(done) / seconds)
    }
}
