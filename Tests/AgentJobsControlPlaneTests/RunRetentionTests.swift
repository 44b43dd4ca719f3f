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
                store: store, age: .seconds(90 * 24 * 3600), keepPerJob: keep, batchSize: 2,
                clock: { Date().addingTimeInterval(days * 24 * 3600) }, logger: Logger(label: "test"))
        }

        #expect(try await retention(after: 0, keep: 0).prune() == (0, 0))
        // 91 days on: each run is its job's newest, kept while one per job is kept.
        #expect(try await retention(after: 91, keep: 1).prune() == (0, 0))
        #expect(try await retention(after: 89, keep: 0).prune() == (0, 0))
        #expect(try await retention(after: 91, keep: 0).prune() == (3, 0))
        #expect(try await store.listRuns(RunFilter(), cursor: nil, limit: 10).runs.isEmpty)
        await store.close()
    }
}
