import AgentJobsCore
import AgentJobsStore
import Logging
import PostgresNIO
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The ``Store`` on PostgreSQL, for the distributed shape: every control-plane and aggregator
/// replica shares one database.
///
/// It behaves as ``SQLiteStore`` does, method by method. Where SQLite relies on its single writer,
/// this store relies on the database: the one-active-run rule is a partial unique index; writes
/// that read before they write lock what they read (`SELECT … FOR UPDATE`, in a stable order);
/// the scheduler's compare-and-set on a schedule's cursor runs under the job row's lock; and a
/// transaction that meets a serialization failure or a deadlock is run again.
///
/// Create one with ``connect(_:logger:)``; ``close()`` releases it.
public final class PostgresStore: Store {
    let client: PostgresClient
    /// The task that runs `client.run()`, the pool's background work; ``close()`` cancels it.
    private let clientTask: Task<Void, Never>
    let logger: Logger
    /// For connections of their own, outside the pool (``followRunChanges(_:)``).
    private let configuration: Configuration
    private let state = Mutex(State())

    private struct State {
        /// Operations started and not finished.
        var inFlight = 0
        var closed = false
        /// `close()` callers waiting for `inFlight` to reach 0.
        var drained: [CheckedContinuation<Void, Never>] = []
        var outboxListeners: [@Sendable () -> Void] = []
        /// The connections closed because an operation on them ran out of time: the pool may
        /// still lease one for a moment (``onConnection(limit:_:)``).
        var givenUp: Set<Int> = []
    }

    private init(
        client: PostgresClient, clientTask: Task<Void, Never>, configuration: Configuration, logger: Logger
    ) {
        self.client = client
        self.clientTask = clientTask
        self.configuration = configuration
        self.logger = logger
    }

    /// Connects to the database and applies pending migrations.
    ///
    /// Several replicas may call this at once: migrations run in one transaction under an advisory
    /// lock, so they are applied once.
    /// - Parameters:
    ///   - configuration: Where the database is and how to reach it.
    ///   - logger: For the connection pool's background work and for the store's queries.
    /// - Returns: The store, its connection pool running.
    /// - Throws: ``StoreError`` with code `unavailable` when the database cannot be reached or migrated.
    public static func connect(_ configuration: Configuration, logger: Logger) async throws -> PostgresStore {
        // One connection first: a wrong address or password fails here at once, where the pool
        // would keep retrying for a minute before it gives up.
        do {
            try await execute("SELECT 1", on: configuration, logger: logger)
        } catch {
            throw StoreError(
                .unavailable,
                "cannot connect to the PostgreSQL database \(configuration.target): \(Self.storeError(error).message)")
        }
        let client = PostgresClient(configuration: configuration.clientConfiguration, backgroundLogger: logger)
        // The pool leases connections only while `run()` runs; the store owns that task. The first
        // lease waits until the task has begun (postgres-nio warns about a lease before `run()`).
        let (begun, beginning) = AsyncStream<Void>.makeStream()
        let clientTask = Task {
            beginning.finish()
            await client.run()
        }
        for await _ in begun {}
        await Task.yield()
        let store = PostgresStore(client: client, clientTask: clientTask, configuration: configuration, logger: logger)
        do {
            try await store.migrate()
        } catch {
            await store.close()
            if let error = error as? StoreError {
                throw StoreError(
                    .unavailable, "cannot open the PostgreSQL database \(configuration.target): \(error.message)")
            }
            throw error
        }
        return store
    }

    /// Runs one statement on a connection of its own, outside the pool (a check that the database
    /// answers; creating and dropping a test's database).
    package static func execute(_ sql: String, on configuration: Configuration, logger: Logger) async throws {
        let connection = try await PostgresConnection.connect(
            configuration: try configuration.connectionConfiguration(), id: 0, logger: logger)
        do {
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }

    /// Waits for the operations under way, refuses new ones, and stops the connection pool.
    public func close() async {
        // Bounded: an operation waits for the database up to its limit, and a stop must not.
        let drained: Void? = (try? await abandoning(after: .seconds(10)) { await self.closeWhenIdle() }) ?? nil
        if drained == nil {
            logger.warning("operations still waiting for the database after 10 s are left behind")
        }
        clientTask.cancel()
        // The pool's own work (a keep-alive query) may hang as an operation can: not for long.
        let clientTask = self.clientTask
        let stopped: Void? = (try? await abandoning(after: .seconds(5)) { await clientTask.value }) ?? nil
        if stopped == nil {
            logger.warning("the PostgreSQL connection pool did not stop within 5 s; the process leaves it behind")
        }
    }

    /// Refuses new operations and returns once those under way have ended.
    private func closeWhenIdle() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { current -> Bool in
                current.closed = true
                guard current.inFlight > 0 else { return true }
                current.drained.append(continuation)
                return false
            }
            if idle { continuation.resume() }
        }
    }

    public func onOutboxAppended(_ listener: @escaping @Sendable () -> Void) {
        state.withLock { $0.outboxListeners.append(listener) }
    }

    /// Tells the listeners that a commit appended outbox rows; called after the commit.
    func outboxAppended() {
        for listener in state.withLock({ $0.outboxListeners }) { listener() }
    }

    public func checkAvailable() async throws {
        try await read { db in _ = try await db.query("SELECT 1") }
    }

    /// The channel the triggers on `runs` notify (``PostgresSchema``, migration 11).
    static let runChangesChannel = "agentjobs_run_changes"

    /// How often the listening connection is checked with a query, and how long the answer may take.
    static let listenCheckInterval: Duration = .seconds(30)
    static let listenCheckTimeout: Duration = .seconds(10)

    /// Listens on ``runChangesChannel`` on a connection of its own, outside the pool: a feed that
    /// follows for hours must not take one of the pool's connections (`pool_size` may be 1). A
    /// listening connection sends nothing, so one that died without a reset (a network partition, a
    /// failover that moved the address) would wait forever: a `SELECT 1` every
    /// ``listenCheckInterval`` that does not answer within ``listenCheckTimeout`` ends it.
    public func followRunChanges(_ changed: @escaping @Sendable () -> Void) async throws {
        try await guarded {
            let connection = try await PostgresConnection.connect(
                configuration: try self.configuration.connectionConfiguration(), id: 1, logger: self.logger)
            do {
                try await withTaskCancellationHandler {
                    try await connection.listen(on: Self.runChangesChannel) { notifications in
                        changed()
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask {
                                for try await _ in notifications { changed() }
                            }
                            group.addTask { try await Self.checkPeriodically(connection, logger: self.logger) }
                            // Either ends only with an error (or the stream's end): end both.
                            try await group.next()
                            group.cancelAll()
                        }
                    }
                } onCancel: {
                    // Whatever the connection is doing (a check's query, waiting for notifications)
                    // ends now: a stopping role must not wait on a database that may be gone.
                    let closing: EventLoopFuture<Void> = connection.close()
                    _ = closing
                }
            } catch {
                try? await connection.close()
                throw Task.isCancelled ? CancellationError() : error
            }
            try? await connection.close()
        }
        try Task.checkCancellation()
        throw StoreError(.unavailable, "the PostgreSQL connection that listened for run changes ended")
    }

    /// Runs `SELECT 1` on `connection` every ``listenCheckInterval`` until cancelled.
    /// - Throws: The query's error, or ``StoreError`` when it takes longer than ``listenCheckTimeout``.
    private static func checkPeriodically(_ connection: PostgresConnection, logger: Logger) async throws {
        while true {
            try await Task.sleep(for: listenCheckInterval)
            let answered = try await abandoning(after: listenCheckTimeout) {
                _ = try await connection.query("SELECT 1", logger: logger)
                return true
            }
            guard answered == true else {
                throw StoreError(
                    .unavailable,
                    "the connection listening for run changes did not answer a check within \(listenCheckTimeout)")
            }
        }
    }

    public func appliedMigrations() async throws -> [Int] {
        try await read { db in
            try await db.query("SELECT version FROM schema_migrations ORDER BY version").map { row in
                let stored = StoredValues(row, table: "schema_migrations")
                return Int(try stored.value("version", Int32.self))
            }
        }
    }

    // MARK: Migrations

    /// Applies the migrations not applied yet, in one transaction under the migration lock (the lock
    /// is released when the transaction ends; a replica that waited for it finds nothing to do).
    ///
    /// A replica that finds another one migrating waits for it up to ``migrationWait``, not the
    /// session's 10 s `lock_timeout`: a migration of a large table takes longer than that, and the
    /// replicas started meanwhile must not fail and restart in a loop.
    private func migrate() async throws {
        try await write(limit: .unlimited) { db in
            let free = try await db.query("SELECT pg_try_advisory_xact_lock(\(PostgresSchema.migrationLockKey))")
            if try free.first?.decode(Bool.self) != true {
                self.logger.notice("another replica is migrating the database; waiting for it")
                try await db.query(
                    PostgresQuery(
                        unsafeSQL: "SET LOCAL lock_timeout = '\(Int(Self.migrationWait.components.seconds))s'"))
                try await db.query("SELECT pg_advisory_xact_lock(\(PostgresSchema.migrationLockKey))")
            }
            try await db.query(PostgresQuery(unsafeSQL: PostgresSchema.migrationsTable))
            let applied = Set(
                try await db.query("SELECT version FROM schema_migrations").map { row in
                    try StoredValues(row, table: "schema_migrations").value("version", Int32.self)
                })
            for migration in PostgresSchema.migrations where !applied.contains(migration.version) {
                for statement in migration.statements {
                    try await db.query(PostgresQuery(unsafeSQL: statement))
                }
                try await db.query(
                    """
                    INSERT INTO schema_migrations (version, name, applied_at)
                    VALUES (\(migration.version), \(migration.name), \(StoredTime.ms(Date())))
                    """)
                self.logger.info(
                    "applied schema migration",
                    metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
        }
    }

    /// How long a replica waits for another one's migration before it reports the database
    /// unavailable.
    static let migrationWait: Duration = .seconds(900)

    // MARK: Plumbing

    /// How many times a write transaction runs before a serialization failure or deadlock is
    /// reported as ``StoreError/Code/unavailable``.
    private static let maxAttempts = 4

    /// How long an operation of the store may take before it is given up: its connection is closed,
    /// and the caller gets ``StoreError/Code/unavailable``. postgres-nio never completes a query
    /// written to a connection the server closed a moment before (a restart or failover terminates
    /// every session), and a server that stalls or a network that drops packets silently leaves a
    /// query unanswered for as long as TCP takes to notice: without a limit the caller would wait
    /// forever, and would not even end when cancelled. Statements wait at most 10 s for a lock
    /// (`lock_timeout`), so a healthy database stays far below the limits.
    enum Limit {
        /// ``Configuration/operationLimit`` (60 s by default).
        case operation
        /// The outbox relay's operations (leases, reading and marking rows): small statements, and
        /// a relay that waited longer than its lease lasts has lost the lease anyway. 10 s, or the
        /// operation limit when that is shorter.
        case relay
        /// None: migrations and imports, which last as long as the tables are large.
        case unlimited
    }

    /// How many times an operation leases a connection when the pool hands it closed ones.
    private static let closedLeaseAttempts = 5

    private func duration(of limit: Limit) -> Duration? {
        switch limit {
        case .operation: configuration.operationLimit
        case .relay: min(configuration.operationLimit, .seconds(10))
        case .unlimited: nil
        }
    }

    /// Runs `body` in a transaction on a pooled connection, turning database failures into
    /// ``StoreError``. A transaction that fails with a serialization failure (40001) or a deadlock
    /// (40P01) is rolled back and run again, so `body` must do nothing but database work.
    /// - Parameters:
    ///   - transaction: `false` runs `body` without `BEGIN` and `COMMIT`: for a body whose writes
    ///     are one statement (atomic on its own), which saves two round trips.
    ///   - limit: How long each attempt may take.
    @discardableResult
    func write<T: Sendable>(
        transaction: Bool = true, limit: Limit = .operation,
        _ body: @escaping @Sendable (PostgresSession) async throws -> T
    ) async throws -> T {
        try await guarded {
            var attempt = 1
            while true {
                do {
                    return try await self.onConnection(limit: limit) { session in
                        transaction ? try await session.transaction(body) : try await body(session)
                    }
                } catch let error as PSQLError where Self.isTransient(error) && attempt < Self.maxAttempts {
                    self.logger.notice(
                        "retrying a transaction the database aborted",
                        metadata: ["sqlstate": "\(error.serverInfo?[.sqlState] ?? "?")", "attempt": "\(attempt)"])
                    attempt += 1
                }
            }
        }
    }

    /// Runs `body` on a pooled connection outside a transaction (each statement sees the data
    /// committed when it starts), turning database failures into ``StoreError``.
    func read<T: Sendable>(
        limit: Limit = .operation, _ body: @escaping @Sendable (PostgresSession) async throws -> T
    ) async throws -> T {
        try await guarded { try await self.onConnection(limit: limit, body) }
    }

    /// Runs `body` on a pooled connection. When it has not ended within `limit`, or within a second
    /// of the caller's cancellation, it is given up: its connection is closed (the pool replaces
    /// it; the server rolls back what the body had not committed), a body that had not got its
    /// connection yet never runs, and the caller gets ``StoreError`` (`unavailable`) or
    /// `CancellationError`.
    ///
    /// The pool learns that a connection closed a moment after it did, and may lease it meanwhile:
    /// such a connection is given back and another one leased (nothing was sent on it), a few
    /// times, before the operation fails.
    private func onConnection<T: Sendable>(
        limit: Limit, _ body: @escaping @Sendable (PostgresSession) async throws -> T
    ) async throws -> T {
        let leased = LeasedConnection()
        let run: @Sendable () async throws -> T = { [self] in
            var attempt = 1
            while true {
                do {
                    return try await client.withConnection { connection in
                        if attempt < Self.closedLeaseAttempts, isClosed(connection) { throw ClosedWhenLeased() }
                        guard leased.use(connection) else { throw CancellationError() }
                        // Back in the pool after this: never closed for this operation any more.
                        defer { leased.done() }
                        return try await body(PostgresSession(connection: connection, logger: logger))
                    }
                } catch is ClosedWhenLeased {
                    attempt += 1
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
        }
        guard let limit = duration(of: limit) else { return try await run() }
        do {
            if let result = try await abandoning(after: limit, run) { return result }
        } catch let error as CancellationError {
            giveUp(leased)
            throw error
        }
        giveUp(leased)
        logger.warning(
            "a database operation did not end in time; its connection is closed",
            metadata: ["limit": "\(limit)"])
        throw StoreError(.unavailable, "the database did not answer within \(limit)")
    }

    /// Ends an operation given up: it may no longer start, and its connection, if it had one, is
    /// closed.
    private func giveUp(_ leased: LeasedConnection) {
        guard let connection = leased.giveUp() else { return }
        state.withLock { current in
            if current.givenUp.count >= 1000 { current.givenUp.removeAll() }
            current.givenUp.insert(connection.id)
        }
        let closing: EventLoopFuture<Void> = connection.close()
        _ = closing
    }

    /// Whether `connection` has closed or is closing because an operation on it was given up.
    private func isClosed(_ connection: PostgresConnection) -> Bool {
        connection.isClosed || state.withLock { $0.givenUp.contains(connection.id) }
    }

    /// Counts the operation in flight (``close()`` waits for it) and maps its errors: the store's
    /// own errors, validation errors and cancellation pass; anything else becomes ``StoreError``.
    private func guarded<T>(_ body: () async throws -> T) async throws -> T {
        guard enter() else { throw StoreError(.unavailable, "the PostgreSQL store is closed") }
        defer { leave() }
        do {
            return try await body()
        } catch let error as StoreError {
            throw error
        } catch let error as ValidationError {
            throw error
        } catch let error as CancellationError {
            throw error
        } catch {
            throw Self.storeError(error)
        }
    }

    private func enter() -> Bool {
        state.withLock { current in
            guard !current.closed else { return false }
            current.inFlight += 1
            return true
        }
    }

    private func leave() {
        let waiters = state.withLock { current -> [CheckedContinuation<Void, Never>] in
            current.inFlight -= 1
            guard current.closed, current.inFlight == 0 else { return [] }
            let drained = current.drained
            current.drained = []
            return drained
        }
        for waiter in waiters { waiter.resume() }
    }

    /// The SQLSTATE of a database error, when the server sent one.
    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// A serialization failure or a deadlock: the transaction was rolled back and may be run again.
    private static func isTransient(_ error: PSQLError) -> Bool {
        let code = error.serverInfo?[.sqlState]
        return code == "40001" || code == "40P01"
    }

    /// The ``StoreError`` for a failure of the database or of the connection to it. The message
    /// holds the server's message and SQLSTATE, or the client's error code: never the query's
    /// bound values, nor the configuration's password.
    static func storeError(_ error: any Error) -> StoreError {
        if sqlState(error) == "23505" {
            // The unique indexes the store relies on are checked before writing (with
            // `ON CONFLICT DO NOTHING` for runs); one met here is a write that raced another.
            return StoreError(
                .conflict, "the record was changed by a concurrent write (unique violation); try again")
        }
        return StoreError(.unavailable, "database error: \(describe(error))")
    }

    private static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return String(describing: error) }
        if let info = error.serverInfo {
            let message = info[.message] ?? "the server refused the operation"
            return info[.sqlState].map { "\(message) (SQLSTATE \($0))" } ?? message
        }
        if let underlying = error.underlying {
            return "\(error.code): \(underlying)"
        }
        return "\(error.code)"
    }
}

/// A connection the pool leased after it had closed.
private struct ClosedWhenLeased: Error {}

/// The pooled connection an operation runs on, once leased, and whether the operation was given up.
private final class LeasedConnection: Sendable {
    private let state = Mutex<(connection: PostgresConnection?, givenUp: Bool)>((nil, false))

    /// Records the operation's connection; false when the operation was given up meanwhile.
    func use(_ connection: PostgresConnection) -> Bool {
        state.withLock { state in
            guard !state.givenUp else { return false }
            state.connection = connection
            return true
        }
    }

    /// The operation is over with its connection (which goes back to the pool).
    func done() {
        state.withLock { $0.connection = nil }
    }

    /// Marks the operation given up; its connection, if it still has one.
    func giveUp() -> PostgresConnection? {
        state.withLock { state in
            state.givenUp = true
            return state.connection
        }
    }
}

/// Times as stored: milliseconds since 1970, rounded as the SQLite store rounds them.
enum StoredTime {
    static func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
    static func ms(_ date: Date?) -> Int64? {
        guard let date else { return nil }
        return Int64((date.timeIntervalSince1970 * 1000).rounded())
    }
    static func date(_ ms: Int64) -> Date { Date(timeIntervalSince1970: Double(ms) / 1000) }
}
