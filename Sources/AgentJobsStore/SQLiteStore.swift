import AgentJobsCore
import AgentJobsSQLite
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The ``Store`` on a SQLite file (WAL, group commit), for the embedded shape and small deployments.
public final class SQLiteStore: Store {
    package let database: SQLiteDatabase
    private let outboxListeners = Mutex<[@Sendable () -> Void]>([])

    /// The database file.
    public var path: String { database.path }

    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    /// - Parameters:
    ///   - path: The database file; its directory must exist.
    ///   - durableCommits: `true` (default) fsyncs every commit so it survives a power loss; `false`
    ///     survives process crashes only.
    /// - Throws: ``StoreError`` with code `unavailable` when the file cannot be opened or migrated.
    public init(path: String, durableCommits: Bool = true) throws {
        if path != ":memory:" && !path.hasPrefix("file:") {
            // Created 0600 before SQLite opens it: its WAL and shared-memory files take its mode.
            do {
                try PrivateFiles.ensurePrivate(path)
                for companion in [path + "-wal", path + "-shm"] where PrivateFiles.mode(of: companion) != nil {
                    try PrivateFiles.ensurePrivate(companion)
                }
            } catch {
                throw StoreError(.unavailable, "cannot open the SQLite database at \(path): \(error)")
            }
        }
        do {
            database = try SQLiteDatabase(
                path: path, durability: durableCommits ? .full : .normal, migrations: SQLiteSchema.migrations)
        } catch let error as SQLiteError {
            throw StoreError(.unavailable, "cannot open the SQLite database at \(path): \(error.message)")
        }
    }

    /// Waits for queued writes and refuses new ones.
    public func close() async { await database.close() }

    public func onOutboxAppended(_ listener: @escaping @Sendable () -> Void) {
        outboxListeners.withLock { $0.append(listener) }
    }

    /// Tells the listeners that a commit appended outbox rows; called after the commit.
    func outboxAppended() {
        for listener in outboxListeners.withLock({ $0 }) { listener() }
    }

    public func checkAvailable() async throws {
        try await read { db in _ = try db.query("SELECT 1") }
    }

    public func appliedMigrations() async throws -> [Int] {
        try await guarded { try await self.database.appliedMigrations() }
    }

    // MARK: Plumbing

    /// Runs a write, turning SQLite failures into ``StoreError``.
    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await guarded { try await self.database.write(body) }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        try await guarded { try await self.database.read(body) }
    }

    private func guarded<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SQLiteError {
            throw StoreError(.unavailable, "database error: \(error.message)")
        }
    }
}
