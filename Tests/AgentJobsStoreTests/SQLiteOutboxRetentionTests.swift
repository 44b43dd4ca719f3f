import AgentJobsCore
import Foundation
import Testing

@testable import AgentJobsStore

@Suite("SQLite outbox retention")
struct SQLiteOutboxRetentionTests {
    @Test(
        "deleting sent outbox rows takes their payloads along, stops at the first row written after the cutoff, keeps unsent rows"
    )
    func deleteSentOutbox() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-outbox-retention-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(path: directory.appendingPathComponent("db.sqlite").path)
        let old = Date(timeIntervalSince1970: 1_790_000_000)
        let cutoff = old.addingTimeInterval(3600)
        // Rows 1-3 written before the cutoff (3 unsent), 4 after it, 5 before it again (a clock that
        // stepped back): the delete stops at row 4, and row 5 waits for a later cutoff.
        try await store.database.write { db in
            for (sequence, time) in [(1, old), (2, old), (3, old), (4, cutoff), (5, old)] {
                try SQLiteStore.appendOutbox(
                    OutboxCommand(
                        key: "host_a", type: RunDispatch.type, runId: "run_\(sequence)",
                        payload: Array("payload \(sequence)".utf8)),
                    now: time, db)
            }
        }
        try await store.markOutboxSent(sequences: [1, 2, 4, 5])
        func sequences(_ table: String) async throws -> [Int64] {
            try await store.database.read { db in
                try db.query("SELECT seq FROM \(table) ORDER BY seq").compactMap { $0.int64("seq") }
            }
        }
        #expect(try await store.deleteSentOutbox(writtenBefore: cutoff, limit: 1) == 1)
        #expect(try await store.deleteSentOutbox(writtenBefore: cutoff, limit: 10) == 1)
        #expect(try await store.deleteSentOutbox(writtenBefore: cutoff, limit: 10) == 0)
        #expect(try await sequences("outbox") == [3, 4, 5])
        #expect(try await sequences("outbox_payloads") == [3, 4, 5])
        #expect(try await store.pendingOutbox(after: 0, limit: 10).map(\.sequence) == [3])
        #expect(try await store.deleteSentOutbox(writtenBefore: cutoff.addingTimeInterval(1), limit: 10) == 2)
        #expect(try await sequences("outbox") == [3])
        await store.close()
    }
}
