import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsStore
import Foundation
import Logging
import Testing

@Suite("Run retention")
struct RunRetentionTests {
    @Test("runs that ended longer ago than the retention are deleted in batches, keeping each job's newest")
    func prunesEndedRuns() async throws {
        let (store, directory, _) = try await OutboxRelayTests.store(runs: 3)
        defer { try? FileManager.default.removeItem(at: directory) }
        let runs = try await store.listRuns(RunFilter(), cursor: nil, limit: 10).runs
        #expect(runs.count == 3)
        // Canceled before their dispatches were sent: ended now.
        for run in runs { _ = try await store.requestCancel(runId: run.id, now: Date()) }
        func retention(after days: Double, keep: Int) -> RunRetention {
            RunRetention(
                store: store, runAge: .seconds(90 * 24 * 3600), keepPerJob: keep, auditAge: nil, batchSize: 2,
                clock: { Date().addingTimeInterval(days * 24 * 3600) }, logger: Logger(label: "test"))
        }

        #expect(try await retention(after: 0, keep: 0).prune() == RunRetention.Pruned())
        // 91 days on: each run is its job's newest, kept while one per job is kept.
        #expect(try await retention(after: 91, keep: 1).prune() == RunRetention.Pruned())
        #expect(try await retention(after: 89, keep: 0).prune() == RunRetention.Pruned())
        #expect(try await retention(after: 91, keep: 0).prune() == RunRetention.Pruned(runs: 3))
        #expect(try await store.listRuns(RunFilter(), cursor: nil, limit: 10).runs.isEmpty)

        // The audit log has its own age: every entry so far (the jobs, runs and cancels above, and
        // the host's registration) is written now, so due only after a year.
        let entries = try await store.listAudit(AuditFilter(), cursor: nil, limit: 500).entries.count
        #expect(entries >= 9)
        func auditRetention(after days: Double) -> RunRetention {
            RunRetention(
                store: store, runAge: nil, keepPerJob: 0, auditAge: .seconds(365 * 24 * 3600), batchSize: 4,
                clock: { Date().addingTimeInterval(days * 24 * 3600) }, logger: Logger(label: "test"))
        }
        #expect(try await auditRetention(after: 364).prune() == RunRetention.Pruned())
        #expect(try await auditRetention(after: 366).prune() == RunRetention.Pruned(auditEntries: entries))
        #expect(try await store.listAudit(AuditFilter(), cursor: nil, limit: 500).entries.isEmpty)
        await store.close()
    }
}
