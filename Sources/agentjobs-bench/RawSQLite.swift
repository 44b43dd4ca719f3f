import AgentJobsCore
import AgentJobsSQLite
import Foundation

/// Inserts into the store's own `runs` table (the schema of ``SQLiteSchema``, its indexes and
/// unique rules) through a bare ``SQLiteConnection``: no group commit, no outbox, no domain code —
/// the ceiling for what the store can do on this disk.
enum RawSQLiteBaseline {
    /// One measurement of raw inserts.
    struct Figure: Codable, Sendable {
        var rows: Int
        var rowsPerTransaction: Int
        var seconds: Double
        var rowsPerSecond: Double
    }

    static let insert = """
        INSERT INTO runs (id, job_id, job_name, job_version, host_id, agent_type, parameters, timeout_seconds,
                          queue_timeout_seconds, status, trigger, scheduled_at, queued_at, dispatch_epoch)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    /// Inserts rows into a fresh database at `path` (WAL, synchronous=FULL), `rowsPerTransaction`
    /// at a time, until `rows` are written or `timeLimit` has passed (checked between transactions).
    /// - Throws: ``SQLiteError``, or ``RawSQLiteFailure`` when the rows written do not add up.
    static func measure(path: String, rows: Int, rowsPerTransaction: Int, timeLimit: Duration) throws -> Figure {
        let database = try SQLiteConnection(path: path)
        try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        try SQLiteDatabase.migrate(database, SQLiteSchema.migrations)
        // Row values are made before the clock starts: this measures SQLite, not id generation.
        var ids = FastIdentifiers()
        let values = (0..<rows).map { index -> [SQLiteValue] in
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
            try database.query("BEGIN IMMEDIATE")
            for index in written..<(written + batch) { try database.execute(insert, values[index]) }
            try database.query("COMMIT")
            written += batch
        }
        let seconds = start.duration(to: clock.now).seconds
        guard try database.count("SELECT count(*) FROM runs") == written else {
            throw RawSQLiteFailure(message: "row count does not match the rows inserted")
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
    /// - Throws: ``SQLiteError``, or ``RawSQLiteFailure`` when the changes do not add up.
    static func measure(path: String, runIds: [String], eventsPerTransaction: Int, timeLimit: Duration) throws
        -> Figure
    {
        let database = try SQLiteConnection(path: path)
        try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-65536;")
        let read = "SELECT seq, status, dispatch_epoch, host_id FROM runs WHERE id = ?"
        let update =
            "UPDATE runs SET status = ?, started_at = ?, finished_at = ?, exit_code = ?, error_summary = ? WHERE seq = ?"
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let passes: [[SQLiteValue]] = [
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
                try database.query("BEGIN IMMEDIATE")
                for id in batch {
                    guard let sequence = try database.query(read, [.text(id)]).first?.int64("seq") else {
                        throw RawSQLiteFailure(message: "no run \(id)")
                    }
                    try database.execute(update, values + [.integer(sequence)])
                }
                try database.query("COMMIT")
                next += batch.count
                done += batch.count
            }
        }
        let seconds = start.duration(to: clock.now).seconds
        let changed =
            try database.count("SELECT count(*) FROM runs WHERE status IN ('running', 'succeeded')")
            + database.count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
        guard changed == done else {
            throw RawSQLiteFailure(message: "\(changed) status changes in the database, \(done) made")
        }
        return Figure(
            events: done, eventsPerTransaction: perTransaction, seconds: seconds,
            eventsPerSecond: Double(done) / seconds)
    }
}

/// A raw baseline whose result does not add up.
struct RawSQLiteFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { "SQLite: \(message)" }
}

extension SQLiteConnection {
    /// The first column of the first row of a `count(*)` query.
    /// - Throws: ``SQLiteError``, or ``RawSQLiteFailure`` when the query returns no number.
    func count(_ sql: String) throws -> Int {
        guard let count = try query(sql).first?.int(at: 0) else {
            throw RawSQLiteFailure(message: "no count from \(sql)")
        }
        return count
    }
}
