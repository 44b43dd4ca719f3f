import CSQLite
import Dispatch
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A SQLite database in WAL mode: one writer connection on its own serial queue that commits
/// concurrent writes together (group commit), and a few reader connections on theirs. No SQLite
/// call ever runs on the Swift cooperative thread pool.
package final class SQLiteDatabase: Sendable {
    /// How hard SQLite works to make a commit survive a power loss (`PRAGMA synchronous`).
    package enum Durability: String, Sendable {
        /// fsync on every commit (group commit amortises it): survives power loss.
        case full = "FULL"
        /// fsync at checkpoints only: survives a process crash, may lose the last commits on power loss.
        case normal = "NORMAL"
    }

    /// A schema change, applied once, in order.
    package struct Migration: Sendable {
        package var version: Int
        package var name: String
        package var sql: String

        package init(version: Int, name: String, sql: String) {
            self.version = version
            self.name = name
            self.sql = sql
        }
    }

    private final class PendingWrite: @unchecked Sendable {
        let execute: (SQLiteConnection) throws -> Void
        let finish: (any Error) -> Void
        let succeed: () -> Void

        init(
            execute: @escaping (SQLiteConnection) throws -> Void, finish: @escaping (any Error) -> Void,
            succeed: @escaping () -> Void
        ) {
            self.execute = execute
            self.finish = finish
            self.succeed = succeed
        }
    }

    private final class ResultBox<T>: @unchecked Sendable {
        var value: T?
    }

    private struct WriterState: ~Copyable {
        var pending: [PendingWrite] = []
        var drainScheduled = false
        var closed = false
    }

    private let writer: SQLiteConnection
    private let writeQueue = DispatchQueue(label: "agentjobs.sqlite.write")
    private let writerState = Mutex(WriterState())
    private let readers: [(connection: SQLiteConnection, queue: DispatchQueue)]
    private let nextReader = Atomic<Int>(0)
    /// Writes committed together at most; bounds the latency of the first write in a batch.
    private let maxBatch = 512
    package let path: String

    /// Opens the database, switches it to WAL and applies the migrations not yet applied.
    /// - Parameters:
    ///   - path: The database file.
    ///   - durability: The `synchronous` setting of the writer.
    ///   - readerCount: How many read connections to keep.
    ///   - migrations: The schema, in version order.
    /// - Throws: ``SQLiteError`` when the file cannot be opened or a migration fails.
    package init(path: String, durability: Durability, readerCount: Int = 3, migrations: [Migration]) throws {
        self.path = path
        writer = try SQLiteConnection(path: path)
        try writer.execute(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=\(durability.rawValue); PRAGMA foreign_keys=ON;"
                // The writer's page cache (default 2 MiB) held too few of the index pages a burst
                // of triggers touches: they were read back from the file (pread) on the serial
                // writer. 64 MiB is an upper bound, used only as the database grows.
                + " PRAGMA cache_size=-65536;"
                // A trigger adds ~5 WAL frames; with the default threshold (1,000 frames) the writer
                // checkpointed every few group commits, on the serial queue: copying pages to the
                // database file and an extra fsync each time, and pages that later commits change
                // again were copied each time. 10,000 frames (~40 MiB of WAL) coalesces them.
                + " PRAGMA wal_autocheckpoint=10000;")
        try Self.migrate(writer, migrations)
        readers = try (0..<max(1, readerCount)).map { index in
            let connection = try SQLiteConnection(path: path)
            try connection.execute("PRAGMA query_only=ON;")
            return (connection, DispatchQueue(label: "agentjobs.sqlite.read.\(index)"))
        }
    }

    /// The versions of the migrations already applied, in order.
    package func appliedMigrations() async throws -> [Int] {
        try await read { connection in
            try connection.query("SELECT version FROM schema_migrations ORDER BY version").compactMap {
                $0.int("version")
            }
        }
    }

    /// Applies the migrations of `migrations` not yet applied on `connection`, in one transaction
    /// (also for a bare connection: the benchmark's raw baseline writes to the store's own schema).
    /// - Throws: ``SQLiteError`` when a migration fails; nothing is applied then.
    package static func migrate(_ connection: SQLiteConnection, _ migrations: [Migration]) throws {
        try connection.execute("BEGIN IMMEDIATE")
        do {
            try connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
            let applied = Set(
                try connection.query("SELECT version FROM schema_migrations").compactMap { $0.int("version") })
            for migration in migrations where !applied.contains(migration.version) {
                try connection.execute(migration.sql)
                try connection.query(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    [.integer(Int64(migration.version)), .text(migration.name), .integer(Date().millisecondsSince1970)])
            }
            try connection.execute("COMMIT")
        } catch {
            try? connection.execute("ROLLBACK")
            throw error
        }
    }

    /// Runs `body` inside a write transaction and returns once it is committed.
    ///
    /// Concurrent writes are committed together; each runs in its own savepoint, so one that throws
    /// is rolled back alone and its error returned to its caller.
    /// - Throws: What `body` throws, or ``SQLiteError`` when the commit fails.
    @discardableResult
    package func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let box = ResultBox<T>()
            let item = PendingWrite(
                execute: { connection in box.value = try body(connection) },
                finish: { error in continuation.resume(throwing: error) },
                succeed: {
                    // Set by `execute`, which ran without throwing before `succeed` is called.
                    continuation.resume(returning: box.value!)
                })
            let schedule = writerState.withLock { state -> Bool in
                if state.closed { return false }
                state.pending.append(item)
                if state.drainScheduled { return true }
                state.drainScheduled = true
                writeQueue.async { self.drain() }
                return true
            }
            if !schedule { item.finish(SQLiteError(code: SQLITE_MISUSE, message: "the database is closed")) }
        }
    }

    private func drain() {
        let batch = writerState.withLock { state -> [PendingWrite] in
            let count = min(state.pending.count, maxBatch)
            let batch = Array(state.pending.prefix(count))
            state.pending.removeFirst(count)
            if state.pending.isEmpty {
                state.drainScheduled = false
            } else {
                writeQueue.async { self.drain() }
            }
            return batch
        }
        guard !batch.isEmpty else { return }
        var outcomes: [(any Error)?] = []
        outcomes.reserveCapacity(batch.count)
        // Transaction control through cached prepared statements (`query`): `execute` would parse
        // the SQL again for every write, on the serial writer.
        do {
            try writer.query("BEGIN IMMEDIATE")
        } catch {
            for item in batch { item.finish(error) }
            return
        }
        for item in batch {
            do {
                try writer.query("SAVEPOINT w")
                do {
                    try item.execute(writer)
                    try writer.query("RELEASE w")
                    outcomes.append(nil)
                } catch {
                    try writer.execute("ROLLBACK TO w; RELEASE w")
                    outcomes.append(error)
                }
            } catch {
                outcomes.append(error)
            }
        }
        do {
            try writer.query("COMMIT")
        } catch {
            try? writer.execute("ROLLBACK")
            for item in batch { item.finish(error) }
            return
        }
        for (item, outcome) in zip(batch, outcomes) {
            if let outcome { item.finish(outcome) } else { item.succeed() }
        }
    }

    /// Runs `body` on a reader connection inside a read transaction (one consistent snapshot).
    /// - Throws: What `body` throws.
    package func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        let index = nextReader.wrappingAdd(1, ordering: .relaxed).oldValue
        let reader = readers[abs(index % readers.count)]
        return try await withCheckedThrowingContinuation { continuation in
            reader.queue.async {
                do {
                    try reader.connection.query("BEGIN")
                    defer { _ = try? reader.connection.query("COMMIT") }
                    continuation.resume(returning: try body(reader.connection))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// Refuses new writes and waits for the queued ones to commit.
    package func close() async {
        writerState.withLock { $0.closed = true }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            writeQueue.async {
                self.drainAll()
                continuation.resume()
            }
        }
    }

    private func drainAll() {
        while writerState.withLock({ !$0.pending.isEmpty }) { drain() }
    }
}
