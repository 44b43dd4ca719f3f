import AgentJobsCore
import AgentJobsPostgres
import AgentJobsSQLite
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Testing

/// What the Store API shows of a control plane, to compare a SQLite store with its copy.
private struct Snapshot: Equatable {
    var apiTokens: [APIToken]
    var registrationTokens: [RegistrationToken]
    var hosts: [AgentJobsCore.Host]
    var jobs: [JobRecord]
    var runs: [Run]
    var pendingOutbox: [OutboxMessage]
    var occurrences: [ScheduleOccurrence]

    init(_ store: any Store, scheduledJobId: String) async throws {
        apiTokens = try await store.listAPITokens()
        registrationTokens = try await store.listRegistrationTokens()
        hosts = try await store.listHosts()
        jobs = try await store.listJobs(JobFilter())
        runs = try await store.listRuns(RunFilter(), cursor: nil, limit: 100).runs
        pendingOutbox = try await store.pendingOutbox(limit: 100)
        occurrences = try await store.scheduleOccurrences(jobId: scheduledJobId, limit: 10)
    }
}

/// A SQLite database of its own in a temporary directory.
private func temporarySQLitePath() throws -> (path: String, remove: @Sendable () -> Void) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "agentjobs-import-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return (directory.appendingPathComponent("db.sqlite").path, { try? FileManager.default.removeItem(at: directory) })
}

@Suite(
    "Importing a SQLite store into PostgreSQL",
    .enabled(if: RequiredService.postgres.shouldRun, RequiredService.postgres.skipReason))
struct SQLiteImportTests {
    @Test("an import copies the control plane's state; new rows continue after it; a second import is refused")
    func importIntoEmptyDatabase() async throws {
        let (path, remove) = try temporarySQLitePath()
        defer { remove() }
        let source = try SQLiteStore(path: path)
        let fixture = try await Fixture(source)
        let t = fixture.now
        func at(_ seconds: TimeInterval) -> Date { t.addingTimeInterval(seconds) }

        let (admin, adminSecret) = try await source.createAPIToken(name: "admin", scope: .admin, now: t)
        let (old, _) = try await source.createAPIToken(name: "old", scope: .read, now: t)
        _ = try await source.revokeAPIToken(id: old.id, now: at(1))
        _ = try await source.createRegistrationToken(expiresAt: at(3600), now: t)
        let credential = Secret.generate(prefix: "ajh")
        try await source.replaceHostCredential(hostId: fixture.host.id, credential: credential)
        let beat = HostHeartbeat(
            hostId: fixture.host.id, sentAt: at(2), version: "1.2.3", managedAgents: [.lineagePlus, .datahealth],
            activeRuns: [], driver: "process")
        _ = try await source.recordHeartbeat(beat, partition: 2, receivedAt: at(2))
        _ = try await source.recordTrackingProbe(
            partition: 2, trackerId: "dev", sentAt: at(2), readAt: at(2), maxDelay: .seconds(10))
        let probeSecret = try await source.trackingProbeSecret()

        let nightly = try await fixture.job("nightly")
        let lineage = try await fixture.job("lineage", agentType: .lineagePlus)
        let scheduled = try await source.createJob(
            JobDefinition(
                name: "scheduled", hostId: fixture.host.id, agentType: .datahealth,
                parameters: .file(fileName: "scheduled.yaml"), schedule: JobSchedule(cron: "0 3 * * *")),
            now: t)
        let published = try await fixture.job("published")

        // Two runs that ended, one succeeded and one failed, their dispatches sent.
        let succeeded = try await source.triggerRun(jobId: nightly.id, trigger: .manual, scheduledAt: nil, now: t)
        let failed = try await source.triggerRun(jobId: lineage.id, trigger: .api, scheduledAt: nil, now: t)
        try await source.markOutboxSent(sequences: try await source.pendingOutbox(limit: 100).map(\.sequence))
        _ = try await source.applyRunEvents(
            [
                RunEventStoreTests.event(.started, succeeded, sequence: 1, at: at(10)),
                RunEventStoreTests.event(.succeeded, succeeded, sequence: 2, at: at(20)),
                RunEventStoreTests.event(.started, failed, sequence: 1, at: at(10)),
                RunEventStoreTests.event(.failed, failed, sequence: 2, at: at(30)),
            ], now: at(30))
        // A running run asked to stop: its cancel is unsent.
        let canceling = try await source.triggerRun(jobId: lineage.id, trigger: .manual, scheduledAt: nil, now: at(40))
        try await source.markOutboxSent(sequences: try await source.pendingOutbox(limit: 100).map(\.sequence))
        _ = try await source.applyRunEvents(
            [RunEventStoreTests.event(.started, canceling, sequence: 1, at: at(41))], now: at(41))
        _ = try await source.requestCancel(runId: canceling.id, now: at(42))
        // Queued runs whose dispatches are unsent: one manual, one of the schedule.
        _ = try await source.triggerRun(jobId: nightly.id, trigger: .manual, scheduledAt: nil, now: at(50))
        let state = try #require(try await source.job(id: scheduled.id)?.scheduleState)
        let occurrence = try #require(state.nextOccurrence)
        let next = occurrence.addingTimeInterval(86400)
        _ = try await source.recordOccurrences(
            jobId: scheduled.id, expectedCursor: state.cursor,
            decisions: [OccurrenceDecision(scheduledAt: occurrence, action: .start)],
            newState: ScheduleState(cursor: occurrence, nextOccurrence: next, dueAt: next), now: occurrence)
        // The newest outbox row is sent, so it is not copied; its sequence must not be drawn again.
        _ = try await source.triggerRun(jobId: published.id, trigger: .manual, scheduledAt: nil, now: at(60))
        let newest = try #require(try await source.pendingOutbox(limit: 100).last)
        try await source.markOutboxSent(sequences: [newest.sequence])

        let expected = try await Snapshot(source, scheduledJobId: scheduled.id)
        #expect(expected.runs.count == 6)
        #expect(expected.pendingOutbox.map(\.type) == [RunCancel.type, RunDispatch.type, RunDispatch.type])
        #expect(expected.occurrences.map(\.outcome) == [.started])
        await source.close()

        let (_, configuration, drop) = try await TestPostgres.freshDatabase()
        let summary = try await PostgresStore.importSQLite(from: path, into: configuration, logger: TestPostgres.logger)
        let copied = Dictionary(uniqueKeysWithValues: summary.copied.map { ($0.table, $0.rows) })
        #expect(copied["runs"] == 6)
        #expect(copied["outbox"] == 3)
        #expect(copied["hosts"] == 1)
        #expect(summary.notCopied.contains { $0.what.contains("log_messages") })
        #expect(summary.notCopied.contains { $0.what == "host_tracking" && $0.rows == 1 })
        #expect(summary.notCopied.contains { $0.what == "outbox rows already sent" && $0.rows == 4 })

        let target = try await PostgresStore.connect(configuration, logger: TestPostgres.logger)
        var imported = try await Snapshot(target, scheduledJobId: scheduled.id)
        // The heartbeat partition was one of the embedded log's: host tracking finds the new one.
        #expect(imported.hosts.map(\.heartbeatPartition) == [nil])
        imported.hosts = imported.hosts.map { host in
            var host = host
            host.heartbeatPartition = 2
            return host
        }
        #expect(imported == expected)
        #expect(try await target.apiToken(secretHash: adminSecret.hash)?.id == admin.id)
        #expect(try await target.host(credentialHash: credential.hash)?.id == fixture.host.id)
        #expect(try await target.run(id: succeeded.id)?.exitCode == 0)
        #expect(try await target.run(id: failed.id)?.status == .failed)
        #expect(try await target.trackingProbeSecret() == probeSecret)
        #expect(try await target.hostTrackingWatermarks().isEmpty)

        // Jobs, runs and outbox rows written now take sequences after every copied (or sent) one.
        let later = try await target.createJob(
            JobDefinition(
                name: "after the move", hostId: fixture.host.id, agentType: .datahealth,
                parameters: .file(fileName: "after.yaml")),
            now: at(100))
        let run = try await target.triggerRun(jobId: later.id, trigger: .manual, scheduledAt: nil, now: at(100))
        #expect(try await target.listRuns(RunFilter(), cursor: nil, limit: 1).runs.map(\.id) == [run.id])
        #expect(try await target.listJobs(JobFilter()).first?.job.id == later.id)
        let dispatch = try #require(try await target.pendingOutbox(limit: 100).last)
        #expect(dispatch.runId == run.id)
        #expect(dispatch.sequence > newest.sequence)

        let refusal = await expectStoreError(.conflict) {
            try await PostgresStore.importSQLite(from: path, into: configuration, logger: TestPostgres.logger)
        }
        #expect(refusal?.message.contains("api_tokens") == true, "\(String(describing: refusal))")
        #expect(try await target.listRuns(RunFilter(), cursor: nil, limit: 100).runs.count == 7)
        await target.close()
        await drop()
    }
}

/// Refusals that come before PostgreSQL is reached: no server needed.
@Suite("Importing a SQLite store: what is refused up front")
struct SQLiteImportRefusalTests {
    /// A database no test reaches.
    let unreachable = PostgresStore.Configuration(
        host: "127.0.0.1", port: 1, username: "nobody", password: nil, database: "none", tls: .disable)

    @Test("a path with no SQLite database is refused, and no file is created there")
    func missingSource() async throws {
        let (path, remove) = try temporarySQLitePath()
        defer { remove() }
        let refusal = await expectStoreError(.unavailable) {
            try await PostgresStore.importSQLite(from: path, into: unreachable, logger: TestPostgres.logger)
        }
        #expect(refusal?.message.contains(path) == true, "\(String(describing: refusal))")
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("a SQLite table this build does not know is refused, not left behind unnoticed")
    func unknownTable() async throws {
        let (path, remove) = try temporarySQLitePath()
        defer { remove() }
        let source = try SQLiteStore(path: path)
        try await source.database.write { db in try db.execute("CREATE TABLE surprise (value TEXT)") }
        await source.close()
        let refusal = await expectStoreError(.unavailable) {
            try await PostgresStore.importSQLite(from: path, into: unreachable, logger: TestPostgres.logger)
        }
        #expect(refusal?.message.contains("surprise") == true, "\(String(describing: refusal))")
    }
}
