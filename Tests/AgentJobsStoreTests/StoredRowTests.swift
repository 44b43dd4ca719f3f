import AgentJobsCore
import Foundation
import Testing

@testable import AgentJobsStore

/// A row this build cannot read is an error that names it, never a plausible default: a run shown
/// `failed` that never failed, a job of another agent type, a time in 1970.
@Suite("Stored rows that cannot be read")
struct StoredRowTests {
    struct Corruption: Sendable, CustomTestStringConvertible {
        var sql: String
        var expected: String
        var testDescription: String { expected }
    }

    static let corruptions: [Corruption] = [
        Corruption(sql: "UPDATE runs SET status = 'exploded'", expected: "runs.status of RUN holds \"exploded\""),
        Corruption(sql: "UPDATE runs SET trigger = 'nobody'", expected: "runs.trigger of RUN holds \"nobody\""),
        Corruption(sql: "UPDATE runs SET agent_type = 'mystery'", expected: "runs.agent_type of RUN holds \"mystery\""),
        Corruption(sql: "UPDATE runs SET parameters = '{'", expected: "runs.parameters of RUN is not the parameters"),
        Corruption(
            sql: "UPDATE jobs SET missed_policy = 'sometimes'",
            expected: "jobs.missed_policy of JOB holds \"sometimes\""),
    ]

    @Test(
        "an unknown or unreadable value is a corrupt-store error naming the table, column and row",
        arguments: corruptions)
    func unknownValueIsNamed(_ corruption: Corruption) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-corrupt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(path: directory.appendingPathComponent("db.sqlite").path)
        let fixture = try await Fixture(store)
        var definition = JobDefinition(
            name: "nightly", hostId: fixture.host.id, agentType: .datahealth, parameters: .file(fileName: "a.yaml"))
        definition.schedule = JobSchedule(cron: "0 3 * * *", timezone: "UTC")
        let job = try await store.createJob(definition, now: fixture.now)
        let run = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        try await store.database.write { db in try db.execute(corruption.sql, []) }

        let expected = corruption.expected.replacingOccurrences(of: "RUN", with: run.id)
            .replacingOccurrences(of: "JOB", with: job.id)
        do {
            if corruption.sql.contains("UPDATE runs") {
                _ = try await store.run(id: run.id)
            } else {
                _ = try await store.job(id: job.id)
            }
            Issue.record("the corrupt row was read without an error")
        } catch let error as StoreError {
            #expect(error.code == .corrupt)
            #expect(error.message.contains(expected), "\(error.message)")
        }
        await store.close()
    }
}
