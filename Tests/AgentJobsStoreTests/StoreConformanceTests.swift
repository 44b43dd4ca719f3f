import AgentJobsCore
import AgentJobsPostgres
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Synchronization
import Testing

/// Every ``Store`` implementation, each opened fresh for one test.
///
/// PostgreSQL runs where `AGENTJOBS_TEST_POSTGRES_URL` names a server (`make test` starts one);
/// each test gets a database of its own. Under `CI=true` a missing server is a failing test.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgres

    static var allCases: [StoreKind] {
        RequiredService.postgres.shouldRun ? [.sqlite, .postgres] : [.sqlite]
    }

    var testDescription: String { rawValue }

    /// The versions a freshly opened store of this kind reports as applied.
    var migrations: [Int] {
        switch self {
        case .sqlite: return Array(1...15)
        case .postgres: return Array(1...11)
        }
    }

    func open() async throws -> (store: any Store, cleanup: @Sendable () async -> Void) {
        switch self {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "agentjobs-store-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let store = try SQLiteStore(path: directory.appendingPathComponent("db.sqlite").path)
            return (
                store,
                {
                    await store.close()
                    try? FileManager.default.removeItem(at: directory)
                }
            )
        case .postgres:
            let (_, configuration, drop) = try await TestPostgres.freshDatabase()
            let store = try await PostgresStore.connect(configuration, logger: TestPostgres.logger)
            return (
                store,
                {
                    await store.close()
                    await drop()
                }
            )
        }
    }
}

/// A store with one registered host, for tests that need jobs.
struct Fixture {
    var store: any Store
    var host: AgentJobsCore.Host
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    init(_ store: any Store, agents: [AgentType] = [.lineagePlus, .datahealth]) async throws {
        self.store = store
        let (_, registration) = try await store.createRegistrationToken(expiresAt: now.addingTimeInterval(60), now: now)
        host = try await store.registerHost(
            registrationTokenHash: registration.hash, name: "db-1", managedAgents: agents,
            credential: Secret.generate(prefix: "ajh"), now: now)
    }

    func job(_ name: String = "nightly", agentType: AgentType = .datahealth) async throws -> Job {
        let parameters: AgentParameters =
            agentType == .datahealth
            ? .file(fileName: "checks.yaml") : .connectors(connectorTypes: ["snowflake"], connectionName: nil)
        return try await store.createJob(
            JobDefinition(name: name, hostId: host.id, agentType: agentType, parameters: parameters), now: now)
    }
}

@discardableResult
func expectStoreError(_ code: StoreError.Code, _ body: () async throws -> some Any) async -> StoreError? {
    do {
        _ = try await body()
        Issue.record("expected \(code), got success")
    } catch let error as StoreError {
        #expect(error.code == code, "\(error)")
        return error
    } catch {
        Issue.record("expected \(code), got \(error)")
    }
    return nil
}

@Suite("Store conformance")
struct StoreConformanceTests {
    @Test("migrations are recorded once and not reapplied on reopen", arguments: StoreKind.allCases)
    func migrationsApplyOnce(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        #expect(try await store.appliedMigrations() == kind.migrations)
        if let sqlite = store as? SQLiteStore {
            let path = sqlite.path
            let reopened = try SQLiteStore(path: path)
            #expect(try await reopened.appliedMigrations() == kind.migrations)
            await reopened.close()
        }
    }

    @Test("a registration token registers exactly one host", arguments: StoreKind.allCases)
    func registrationTokenIsOneTime(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let now = Date()
        let (_, secret) = try await store.createRegistrationToken(expiresAt: now.addingTimeInterval(60), now: now)
        let credential = Secret.generate(prefix: "ajh")
        let host = try await store.registerHost(
            registrationTokenHash: secret.hash, name: "a", managedAgents: [.datahealth], credential: credential,
            now: now)
        #expect(try await store.host(credentialHash: credential.hash)?.id == host.id)
        await expectStoreError(.invalidRegistrationToken) {
            try await store.registerHost(
                registrationTokenHash: secret.hash, name: "b", managedAgents: [], credential: .generate(prefix: "ajh"),
                now: now)
        }
        let (_, expired) = try await store.createRegistrationToken(expiresAt: now.addingTimeInterval(-1), now: now)
        await expectStoreError(.invalidRegistrationToken) {
            try await store.registerHost(
                registrationTokenHash: expired.hash, name: "c", managedAgents: [], credential: .generate(prefix: "ajh"),
                now: now)
        }
        #expect(try await store.listHosts().count == 1)
    }

    @Test(
        "registration tokens are listed with their state; a revoked one registers no host",
        arguments: StoreKind.allCases)
    func registrationTokensListedAndRevoked(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let later = now.addingTimeInterval(10)
        let (used, usedSecret) = try await store.createRegistrationToken(
            expiresAt: now.addingTimeInterval(3600), now: now)
        let (expired, _) = try await store.createRegistrationToken(
            expiresAt: now.addingTimeInterval(2), now: now.addingTimeInterval(1))
        let (revoked, revokedSecret) = try await store.createRegistrationToken(
            expiresAt: now.addingTimeInterval(3600), now: now.addingTimeInterval(2))
        let (active, _) = try await store.createRegistrationToken(
            expiresAt: now.addingTimeInterval(3600), now: now.addingTimeInterval(3))
        let host = try await store.registerHost(
            registrationTokenHash: usedSecret.hash, name: "a", managedAgents: [.datahealth],
            credential: .generate(prefix: "ajh"), now: later)

        let revokedToken = try await store.revokeRegistrationToken(id: revoked.id, now: later)
        #expect(revokedToken.revokedAt == later)
        #expect(revokedToken.state(at: later) == .revoked)
        await expectStoreError(.invalidRegistrationToken) {
            try await store.registerHost(
                registrationTokenHash: revokedSecret.hash, name: "b", managedAgents: [],
                credential: .generate(prefix: "ajh"), now: later)
        }
        // Revoking twice changes nothing: the first revocation time stays.
        let again = try await store.revokeRegistrationToken(id: revoked.id, now: later.addingTimeInterval(60))
        #expect(again.revokedAt == later)

        await expectStoreError(.notFound) { try await store.revokeRegistrationToken(id: "reg_missing", now: later) }
        // A used token is spent; what to revoke is the host that used it.
        let conflict = await expectStoreError(.conflict) {
            try await store.revokeRegistrationToken(id: used.id, now: later)
        }
        #expect(
            conflict?.message.contains("POST /api/v1/hosts/\(host.id)/revoke") == true,
            "\(String(describing: conflict))")

        let listed = try await store.listRegistrationTokens()
        #expect(listed.map(\.id) == [used.id, expired.id, revoked.id, active.id])
        #expect(listed.map { $0.state(at: later) } == [.used, .expired, .revoked, .active])
        #expect(listed[0].usedAt == later)
        #expect(listed[0].usedByHostId == host.id)
        #expect(listed[0].revokedAt == nil)
        #expect(listed[2].revokedAt == later)
        #expect(listed[3].usedAt == nil && listed[3].usedByHostId == nil && listed[3].revokedAt == nil)
        #expect(try await store.listHosts().map(\.id) == [host.id])
    }

    @Test("API tokens are found by hash until revoked", arguments: StoreKind.allCases)
    func apiTokens(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let (token, secret) = try await store.createAPIToken(name: "ci", scope: .write, now: Date())
        #expect(try await store.apiToken(secretHash: secret.hash)?.scope == .write)
        #expect(try await store.apiToken(secretHash: Secret.hash(secret.value + "x")) == nil)
        _ = try await store.revokeAPIToken(id: token.id, now: Date())
        #expect(try await store.apiToken(secretHash: secret.hash) == nil)
        #expect(try await store.listAPITokens().first?.revokedAt != nil)
        await expectStoreError(.notFound) { try await store.revokeAPIToken(id: "tok_missing", now: Date()) }
    }

    @Test(
        "a job is refused for an unknown host or an agent type the host does not manage", arguments: StoreKind.allCases)
    func jobNeedsAManagingHost(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store, agents: [.datahealth])
        do {
            _ = try await fixture.job(agentType: .lineagePlus)
            Issue.record("job accepted for an unmanaged agent type")
        } catch let error as ValidationError {
            #expect(error.field == "agentType")
        }
        do {
            _ = try await store.createJob(
                JobDefinition(
                    name: "x", hostId: "host_missing", agentType: .datahealth, parameters: .file(fileName: "f")),
                now: Date())
            Issue.record("job accepted for a missing host")
        } catch let error as ValidationError {
            #expect(error.field == "hostId")
        }
        #expect(try await store.listJobs(JobFilter()).isEmpty)
    }

    @Test(
        "a trigger queues a run with a snapshot of the job and its dispatch in the outbox",
        arguments: StoreKind.allCases)
    func triggerWritesRunAndOutbox(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await fixture.job()
        let run = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        #expect(run.status == .queued)
        #expect(run.jobVersion == 1)
        #expect(run.parameters == job.parameters)
        #expect(try await store.job(id: job.id)?.lastRun?.id == run.id)
        let outbox = try await store.pendingOutbox(limit: 10)
        #expect(outbox.count == 1)
        #expect(outbox.first?.key == fixture.host.id)
        #expect(outbox.first?.topic == Topic.dispatch)
        #expect(outbox.first?.type == RunDispatch.type)
        let dispatch = try JSONDecoder.iso.decode(RunDispatch.self, from: Data(outbox[0].payload))
        #expect(dispatch.runId == run.id)
        #expect(dispatch.hostId == fixture.host.id)
        try await store.markOutboxSent(sequences: outbox.map(\.sequence))
        #expect(try await store.pendingOutbox(limit: 10).isEmpty)
    }

    @Test(
        "the outbox backlog counts unsent rows and dates the oldest; registered hosts are counted until revoked",
        arguments: StoreKind.allCases)
    func backlogAndHostCount(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        #expect(try await store.outboxBacklog() == OutboxBacklog(unsent: 0, oldestWrittenAt: nil))
        for (offset, name) in ["a", "b", "c"].enumerated() {
            _ = try await store.triggerRun(
                jobId: try await fixture.job(name).id, trigger: .manual, scheduledAt: nil,
                now: fixture.now.addingTimeInterval(Double(offset)))
        }
        #expect(try await store.outboxBacklog() == OutboxBacklog(unsent: 3, oldestWrittenAt: fixture.now))
        let rows = try await store.pendingOutbox(limit: 10)
        try await store.markOutboxSent(sequences: [rows[0].sequence])
        #expect(
            try await store.outboxBacklog()
                == OutboxBacklog(unsent: 2, oldestWrittenAt: fixture.now.addingTimeInterval(1)))

        #expect(try await store.hostCount() == 1)
        let (_, registration) = try await store.createRegistrationToken(
            expiresAt: fixture.now.addingTimeInterval(60), now: fixture.now)
        let second = try await store.registerHost(
            registrationTokenHash: registration.hash, name: "db-2", managedAgents: [.datahealth],
            credential: Secret.generate(prefix: "ajh"), now: fixture.now)
        #expect(try await store.hostCount() == 2)
        _ = try await store.revokeHost(id: second.id, now: fixture.now)
        #expect(try await store.hostCount() == 1)
    }

    @Test(
        "a lone relay's lease covers every pending row; after a release the next lease does too; the store answers a readiness check",
        arguments: StoreKind.allCases)
    func loneRelayLease(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        try await store.checkAvailable()
        let fixture = try await Fixture(store)
        for name in ["a", "b", "c"] {
            _ = try await store.triggerRun(
                jobId: try await fixture.job(name).id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        }
        let all = try await store.pendingOutbox(limit: 10).map(\.sequence)
        #expect(all.count == 3)
        let lease = try await store.leaseOutboxShards(replica: "only", duration: .seconds(30))
        #expect(lease.replicas == 1)
        #expect(try await store.pendingOutbox(after: 0, limit: 10, shards: lease.shards).map(\.sequence) == all)
        try await store.releaseOutboxShards(replica: "only")
        let next = try await store.leaseOutboxShards(replica: "next", duration: .seconds(30))
        #expect(try await store.pendingOutbox(after: 0, limit: 10, shards: next.shards).map(\.sequence) == all)
    }

    @Test(
        "the store signals each commit that appended outbox rows, and no other: trigger, cancel, a start for a closed run",
        arguments: StoreKind.allCases)
    func signalsOutboxAppends(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let signals = Mutex(0)
        store.onOutboxAppended { signals.withLock { $0 += 1 } }
        func count() -> Int { signals.withLock { $0 } }
        let job = try await fixture.job()
        let run = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        #expect(count() == 1)
        // Canceled while its dispatch is unsent: withdrawn, and a cancel queued.
        _ = try await store.requestCancel(runId: run.id, now: fixture.now)
        #expect(count() == 2)
        // The host started it anyway: the store queues a cancel for it.
        let started = RunLifecycleEvent(
            type: .started, runId: run.id, jobId: job.id, hostId: fixture.host.id, dispatchEpoch: run.dispatchEpoch,
            sequence: 2, at: fixture.now)
        #expect(
            try await store.applyRunEvents([started], now: fixture.now) == [
                .stopRequested(try #require(try await store.run(id: run.id)))
            ])
        #expect(count() == 3)
        // Events that append nothing, and a cancel of an ended run, signal nothing.
        let second = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        #expect(count() == 4)
        let accepted = RunLifecycleEvent(
            type: .accepted, runId: second.id, jobId: job.id, hostId: fixture.host.id,
            dispatchEpoch: second.dispatchEpoch, sequence: 1, at: fixture.now)
        _ = try await store.applyRunEvents([accepted, started], now: fixture.now.addingTimeInterval(1))
        #expect(count() == 5, "the repeated start of the closed run asks again; the accepted one appends nothing")
        await expectStoreError(.runFinished) { try await store.requestCancel(runId: run.id, now: fixture.now) }
        #expect(count() == 5)
    }

    @Test(
        "marking outbox rows sent marks exactly those given, in runs, alone or in any order",
        arguments: StoreKind.allCases)
    func markSentExactly(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        for index in 0..<9 {
            let job = try await fixture.job("job-\(index)")
            _ = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: fixture.now)
        }
        let rows = try await store.pendingOutbox(limit: 20).map(\.sequence)
        #expect(rows.count == 9)
        // Two runs (0-2, 7-8), one row alone (5), given out of order; 3, 4 and 6 stay pending.
        try await store.markOutboxSent(sequences: [rows[8], rows[5], rows[0], rows[2], rows[1], rows[7]])
        #expect(try await store.pendingOutbox(limit: 20).map(\.sequence) == [rows[3], rows[4], rows[6]])
        // Already sent rows given again change nothing.
        try await store.markOutboxSent(sequences: [rows[0], rows[3]])
        #expect(try await store.pendingOutbox(limit: 20).map(\.sequence) == [rows[4], rows[6]])
    }

    @Test("editing a job changes the next run only", arguments: StoreKind.allCases)
    func editAffectsNextRunOnly(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await fixture.job()
        let first = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: fixture.now)
        var definition = JobDefinition(job)
        definition.parameters = .file(fileName: "other.yaml")
        let edited = try await store.updateJob(id: job.id, expectedVersion: 1, definition: definition, now: fixture.now)
        #expect(edited.version == 2)
        await expectStoreError(.conflict) {
            try await store.updateJob(id: job.id, expectedVersion: 1, definition: definition, now: fixture.now)
        }
        #expect(try await store.run(id: first.id)?.parameters == .file(fileName: "checks.yaml"))
        _ = try await store.requestCancel(runId: first.id, now: fixture.now)
        let second = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: fixture.now)
        #expect(second.jobVersion == 2)
        #expect(second.parameters == .file(fileName: "other.yaml"))
        #expect(try await store.job(id: job.id)?.lastRun?.id == second.id, "the job shows its newest run")
        #expect(try await store.listJobs(JobFilter()).first { $0.job.id == job.id }?.lastRun?.id == second.id)
    }

    @Test("concurrent triggers of one job produce exactly one active run", arguments: StoreKind.allCases)
    func oneActiveRunUnderConcurrency(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await fixture.job()
        let results = await withTaskGroup(of: Result<Run, StoreError>.self) { group in
            for _ in 0..<100 {
                group.addTask {
                    do {
                        return .success(
                            try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: Date()))
                    } catch let error as StoreError {
                        return .failure(error)
                    } catch {
                        return .failure(StoreError(.unavailable, "\(error)"))
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let runs = results.compactMap { try? $0.get() }
        #expect(runs.count == 1)
        let failures = results.compactMap { result -> StoreError? in
            if case .failure(let error) = result { return error }
            return nil
        }
        #expect(failures.count == 99)
        #expect(failures.allSatisfy { $0.code == .activeRun && $0.activeRunId == runs.first?.id })
        #expect(try await store.pendingOutbox(limit: 1000).count == 1)
    }

    @Test("deleting a job with an active run is refused; otherwise its runs stay", arguments: StoreKind.allCases)
    func deleteKeepsRuns(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await fixture.job()
        let run = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: fixture.now)
        let refused = await expectStoreError(.activeRun) { try await store.deleteJob(id: job.id) }
        #expect(refused?.activeRunId == run.id)
        _ = try await store.requestCancel(runId: run.id, now: fixture.now)
        try await store.deleteJob(id: job.id)
        #expect(try await store.job(id: job.id) == nil)
        #expect(try await store.run(id: run.id)?.jobName == "nightly")
        #expect(try await store.listRuns(RunFilter(jobId: job.id), cursor: nil, limit: 10).runs.count == 1)
        await expectStoreError(.notFound) { try await store.deleteJob(id: job.id) }
        await expectStoreError(.notFound) {
            try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: fixture.now)
        }
    }

    @Test(
        "cancel withdraws an unsent dispatch, asks the host otherwise, and refuses finished runs",
        arguments: StoreKind.allCases)
    func cancelSemantics(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await fixture.job()
        let unsent = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: fixture.now)
        guard case .canceled(let canceled) = try await store.requestCancel(runId: unsent.id, now: fixture.now) else {
            Issue.record("an undispatched run should be canceled on the spot")
            return
        }
        #expect(canceled.status == .canceled)
        // The dispatch is withdrawn; a cancel follows, for a relay that read the dispatch just before.
        let followUp = try await store.pendingOutbox(limit: 10)
        #expect(followUp.map(\.type) == [RunCancel.type])
        #expect(followUp.first?.runId == unsent.id)
        try await store.markOutboxSent(sequences: followUp.map(\.sequence))
        await expectStoreError(.runFinished) { try await store.requestCancel(runId: unsent.id, now: fixture.now) }

        let sent = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: fixture.now)
        try await store.markOutboxSent(sequences: try await store.pendingOutbox(limit: 10).map(\.sequence))
        guard case .requested(let requested) = try await store.requestCancel(runId: sent.id, now: fixture.now) else {
            Issue.record("a dispatched run must be canceled through its host")
            return
        }
        #expect(requested.status == .queued)
        #expect(requested.cancelRequestedAt != nil)
        let pending = try await store.pendingOutbox(limit: 10)
        #expect(pending.map(\.type) == [RunCancel.type])
        #expect(pending.first?.key == fixture.host.id)
        // Asking again is harmless and sends nothing more.
        _ = try await store.requestCancel(runId: sent.id, now: fixture.now)
        #expect(try await store.pendingOutbox(limit: 10).count == 1)
        await expectStoreError(.notFound) { try await store.requestCancel(runId: "run_missing", now: fixture.now) }
    }

    @Test("runs are listed newest first, filtered, and paged with a cursor", arguments: StoreKind.allCases)
    func listRunsPagesAndFilters(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let a = try await fixture.job("a")
        let b = try await fixture.job("b", agentType: .lineagePlus)
        var created: [String] = []
        for index in 0..<7 {
            let job = index.isMultiple(of: 2) ? a : b
            let run = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: fixture.now)
            created.append(run.id)
            _ = try await store.requestCancel(runId: run.id, now: fixture.now)
        }
        var seen: [String] = []
        var cursor: String?
        repeat {
            let page = try await store.listRuns(RunFilter(), cursor: cursor, limit: 3)
            seen += page.runs.map(\.id)
            cursor = page.nextCursor
        } while cursor != nil
        #expect(seen == created.reversed())
        #expect(try await store.listRuns(RunFilter(jobId: a.id), cursor: nil, limit: 50).runs.count == 4)
        #expect(try await store.listRuns(RunFilter(agentType: .lineagePlus), cursor: nil, limit: 50).runs.count == 3)
        #expect(try await store.listRuns(RunFilter(status: .canceled), cursor: nil, limit: 50).runs.count == 7)
        #expect(try await store.listRuns(RunFilter(status: .queued), cursor: nil, limit: 50).runs.isEmpty)
        #expect(try await store.listRuns(RunFilter(hostId: fixture.host.id), cursor: nil, limit: 50).runs.count == 7)
        do {
            _ = try await store.listRuns(RunFilter(), cursor: "garbage", limit: 3)
            Issue.record("a malformed cursor was accepted")
        } catch let error as ValidationError {
            #expect(error.field == "cursor")
        }
    }

    @Test(
        "a rerun keeps the run it repeats, read back by id, in listings and as the job's last run",
        arguments: StoreKind.allCases)
    func rerunLink(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await fixture.job("a")
        let first = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        _ = try await store.requestCancel(runId: first.id, now: fixture.now)
        let requester = RunRequester(kind: .token, id: "tok_1", name: "ci: deploy")
        let again = try await store.triggerRun(
            jobId: job.id, trigger: .rerun, scheduledAt: nil, rerunOf: first.id, triggeredBy: requester,
            now: fixture.now, traceParent: nil)
        #expect(again.rerunOf == first.id && again.trigger == .rerun && again.triggeredBy == requester)
        #expect(try await store.run(id: again.id) == again)
        #expect(try await store.run(id: first.id)?.rerunOf == nil)
        #expect(try await store.listRuns(RunFilter(jobId: job.id), cursor: nil, limit: 10).runs.first == again)
        #expect(try await store.job(id: job.id)?.lastRun?.rerunOf == first.id)
        let canceler = RunRequester(kind: .host, id: "host_1", name: "edge")
        let canceled = try await store.requestCancel(runId: again.id, by: canceler, now: fixture.now).run
        #expect(canceled.cancelRequestedBy == canceler)
        #expect(try await store.run(id: again.id) == canceled)
        #expect(try await store.run(id: first.id)?.cancelRequestedBy == nil)
    }

    @Test(
        "runs are filtered by the time they were queued, since inclusive and until exclusive",
        arguments: StoreKind.allCases)
    func listRunsByQueuedTime(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await fixture.job("a")
        var created: [String] = []
        for minute in 0..<5 {
            let at = fixture.now.addingTimeInterval(Double(minute) * 60)
            let run = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: at)
            created.append(run.id)
            _ = try await store.requestCancel(runId: run.id, now: at)
        }
        func ids(_ since: Double?, _ until: Double?, status: RunStatus? = nil) async throws -> [String] {
            let filter = RunFilter(
                status: status, queuedSince: since.map { fixture.now.addingTimeInterval($0 * 60) },
                queuedUntil: until.map { fixture.now.addingTimeInterval($0 * 60) })
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await store.listRuns(filter, cursor: cursor, limit: 1)
                seen += page.runs.map(\.id)
                cursor = page.nextCursor
            } while cursor != nil
            return seen
        }
        #expect(try await ids(1, 3) == [created[2], created[1]])
        #expect(try await ids(3, nil) == [created[4], created[3]])
        #expect(try await ids(nil, 1) == [created[0]])
        #expect(try await ids(1.5, 2.5, status: .canceled) == [created[2]])
        #expect(try await ids(1.5, 2.5, status: .queued).isEmpty)
        #expect(try await ids(5, nil).isEmpty)
    }

    @Test("a host's managed agents can be re-synced", arguments: StoreKind.allCases)
    func managedAgentsSync(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let host = try await store.updateManagedAgents(hostId: fixture.host.id, managedAgents: [.externalMonitors])
        #expect(host.managedAgents == [.externalMonitors])
        #expect(try await store.host(id: fixture.host.id)?.managedAgents == [.externalMonitors])
        await expectStoreError(.notFound) { try await store.updateManagedAgents(hostId: "host_x", managedAgents: []) }
    }
}

extension JSONDecoder {
    static var iso: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = ISO8601.parse(text) else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "bad date \(text)"))
            }
            return date
        }
        return decoder
    }
}
