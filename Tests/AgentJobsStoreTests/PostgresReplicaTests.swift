import AgentJobsCore
import AgentJobsPostgres
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Testing

/// What several control-plane replicas on one PostgreSQL database rely on.
@Suite(
    "PostgreSQL store replicas", .enabled(if: RequiredService.postgres.shouldRun, RequiredService.postgres.skipReason))
struct PostgresReplicaTests {
    /// `count` stores on one fresh database, connected at once.
    func replicas(_ count: Int) async throws -> (stores: [PostgresStore], drop: @Sendable () async -> Void) {
        let (_, configuration, drop) = try await TestPostgres.freshDatabase()
        let logger = TestPostgres.logger
        let stores = try await withThrowingTaskGroup(of: PostgresStore.self) { group in
            for _ in 0..<count { group.addTask { try await PostgresStore.connect(configuration, logger: logger) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        return (stores, drop)
    }

    @Test("four replicas starting together on an empty database migrate it once")
    func migrateOnce() async throws {
        let (stores, drop) = try await replicas(4)
        for store in stores { #expect(try await store.appliedMigrations() == Array(1...11)) }
        for store in stores { await store.close() }
        await drop()
    }

    @Test("a replica waits for another replica's migration longer than the 10 s lock timeout, then finds it done")
    func waitsForALongMigration() async throws {
        let (_, configuration, drop) = try await TestPostgres.freshDatabase()
        let logger = TestPostgres.logger
        // Another replica holding the migration lock for 12 s (a migration of a large table).
        let migrating = Task {
            try await PostgresStore.execute(
                "SELECT pg_advisory_xact_lock(\(PostgresSchema.migrationLockKey)), pg_sleep(12)", on: configuration,
                logger: logger)
        }
        try await Task.sleep(for: .seconds(1))
        let started = ContinuousClock.now
        let store = try await PostgresStore.connect(configuration, logger: logger)
        let waited = ContinuousClock.now - started
        try await migrating.value
        #expect(waited > .seconds(9), "connect did not wait for the lock (\(waited))")
        #expect(try await store.appliedMigrations() == Array(1...11))
        await store.close()
        await drop()
    }

    @Test("a trigger whose prepared statement failed once on a connection works once the cause is gone")
    func failedPreparationIsNotKept() async throws {
        let (_, configuration, drop) = try await TestPostgres.freshDatabase()
        var single = configuration
        single.maximumConnections = 1  // every trigger on the same connection unless it is closed
        let store = try await PostgresStore.connect(single, logger: TestPostgres.logger)
        let job = try await Fixture(store).job()
        // The trigger's statements cannot be prepared while the table is missing.
        try await PostgresStore.execute(
            "ALTER TABLE jobs RENAME TO jobs_away", on: configuration, logger: TestPostgres.logger)
        await #expect(throws: StoreError.self) {
            _ = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: Date())
        }
        try await PostgresStore.execute(
            "ALTER TABLE jobs_away RENAME TO jobs", on: configuration, logger: TestPostgres.logger)
        let run = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: Date())
        #expect(run.jobId == job.id)
        await store.close()
        await drop()
    }

    @Test(
        "an operation the database does not answer is given up at the operation limit, and the store works again once it answers"
    )
    func unansweredOperationIsGivenUp() async throws {
        let (_, configuration, drop) = try await TestPostgres.freshDatabase()
        var limited = configuration
        limited.maximumConnections = 1
        limited.operationLimit = .seconds(2)
        let store = try await PostgresStore.connect(limited, logger: TestPostgres.logger)
        try await store.checkAvailable()
        // The server process of the store's one connection stops answering, as a stalled server or a
        // network that drops packets would (and as postgres-nio does with a query it wrote to a
        // connection the server had just closed).
        let backends = Self.serverProcesses(of: try #require(configuration.database))
        try #require(!backends.isEmpty, "no server process of the test database found under /proc")
        for pid in backends { kill(pid, SIGSTOP) }
        let started = ContinuousClock.now
        let outcome = try await abandoning(after: .seconds(30)) { () -> Result<Void, any Error> in
            do { return .success(try await store.checkAvailable()) } catch { return .failure(error) }
        }
        let took = ContinuousClock.now - started
        for pid in backends { kill(pid, SIGCONT) }
        let result = try #require(outcome, "the operation still waited after 30 s")
        #expect(throws: StoreError.self) { try result.get() }
        #expect(took < .seconds(10), "given up after \(took)")
        try await store.checkAvailable()
        await store.close()
        await drop()
    }

    /// The PostgreSQL server processes serving connections to `database` (their titles read
    /// `postgres: USER DATABASE HOST(PORT) STATE`).
    static func serverProcesses(of database: String) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry),
                let title = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8)
            else { return nil }
            let words = title.replacingOccurrences(of: "\0", with: " ").split(separator: " ")
            return words.first == "postgres:" && words.count > 2 && words[2] == database ? pid : nil
        }
    }

    @Test("200 concurrent triggers of one job spread over two replicas start exactly one run")
    func oneActiveRunAcrossReplicas() async throws {
        let (stores, drop) = try await replicas(2)
        let fixture = try await Fixture(stores[0])
        let job = try await fixture.job()
        let outcomes = await withTaskGroup(of: Result<Run, any Error>.self) { group in
            for index in 0..<200 {
                let store = stores[index % 2]
                group.addTask {
                    do {
                        return .success(
                            try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: Date()))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let started = outcomes.compactMap { try? $0.get() }
        #expect(started.count == 1)
        let conflicts = outcomes.compactMap { outcome -> StoreError? in
            guard case .failure(let error) = outcome else { return nil }
            return error as? StoreError
        }
        #expect(conflicts.count == 199)
        #expect(conflicts.allSatisfy { $0.code == .activeRun && $0.activeRunId == started.first?.id })
        #expect(try await stores[1].listRuns(RunFilter(jobId: job.id), cursor: nil, limit: 10).runs.count == 1)
        for store in stores { await store.close() }
        await drop()
    }

    @Test(
        "two replicas applying the same ends write one retry each; releasing due retries together dispatches each once"
    )
    func retriesExactlyOnce() async throws {
        let (stores, drop) = try await replicas(2)
        let fixture = try await Fixture(stores[0])
        let t = fixture.now
        var jobs: [Job] = []
        var firsts: [Run] = []
        for index in 0..<40 {
            let job = try await RetryStoreTests.job(fixture, name: "job \(index)")
            jobs.append(job)
            firsts.append(try await stores[0].triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: t))
        }
        // An aggregator rebalance: both replicas apply the same failures at the same moment.
        let events = firsts.map { RunEventStoreTests.event(.failed, $0, sequence: 1, at: t) }
        async let first = stores[0].applyRunEvents(events, now: t)
        async let second = stores[1].applyRunEvents(events, now: t)
        _ = try await (first, second)
        var retries: [Run] = []
        for job in jobs {
            let runs = try await RetryStoreTests.runs(of: job, stores[1])
            #expect(runs.map(\.attempt) == [1, 2])
            if let retry = runs.last { retries.append(retry) }
        }
        // Both release in small batches until nothing is due.
        let due = t.addingTimeInterval(RetryStoreTests.policy.maxDelaySeconds.seconds)
        let released = try await withThrowingTaskGroup(of: [String].self) { group in
            for store in stores {
                group.addTask {
                    var ids: [String] = []
                    while true {
                        let batch = try await store.releaseHeldRuns(now: due, limit: 3)
                        if batch.isEmpty { return ids }
                        ids += batch.map(\.id)
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(released.count == 40)
        #expect(Set(released) == Set(retries.map(\.id)))
        let dispatches = try await stores[0].pendingOutbox(limit: 10_000).filter { $0.type == RunDispatch.type }
        for retry in retries {
            #expect(dispatches.count { $0.runId == retry.id } == 1, "run \(retry.id)")
        }
        for store in stores { await store.close() }
        await drop()
    }
}

extension Int {
    fileprivate var seconds: TimeInterval { TimeInterval(self) }
}
