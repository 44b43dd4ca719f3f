import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsStore
import Foundation
import Logging
import Testing

@Suite("Outbox retention")
struct OutboxRetentionTests {
    @Test("sent messages older than the retention are deleted in batches; unsent and newer ones are kept")
    func prunesSentMessagesOnly() async throws {
        let (store, directory, _) = try await OutboxRelayTests.store(runs: 5)
        defer { try? FileManager.default.removeItem(at: directory) }
        let rows = try await store.pendingOutbox(limit: 10)
        #expect(rows.count == 5)
        try await store.markOutboxSent(sequences: rows.dropLast().map(\.sequence))
        func retention(after days: Double) -> OutboxRetention {
            OutboxRetention(
                store: store, age: .seconds(7 * 24 * 3600), batchSize: 2,
                clock: { Date().addingTimeInterval(days * 24 * 3600) }, logger: Logger(label: "test"))
        }

        // Written just now: nothing is due yet.
        #expect(try await retention(after: 0).prune() == 0)
        // Eight days on: the four sent messages go, two per transaction; the unsent one stays whole.
        #expect(try await retention(after: 8).prune() == 4)
        let pending = try await store.pendingOutbox(limit: 10)
        #expect(pending.map(\.sequence) == [rows[4].sequence])
        #expect(pending.first?.payload == rows[4].payload)
        #expect(try await retention(after: 8).prune() == 0)
        await store.close()
    }
}
