import AgentJobsCore
import AgentJobsSQLite
import Foundation
import Testing

@testable import AgentJobsStore

@Suite("SQLite migrations")
struct SQLiteMigrationTests {
    @Test(
        "outbox payloads and unsent rows move to their own tables: every row keeps its payload, only unsent rows are pending, a deleted row takes both along"
    )
    func outboxPayloadsAndUnsentApart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-migration-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("db.sqlite").path
        let now = Date(timeIntervalSince1970: 1_790_000_000)

        // A database as version 3 left it: payloads inside the outbox rows, the first row sent.
        let previous = try SQLiteDatabase(
            path: path, durability: .normal, migrations: Array(SQLiteSchema.migrations.prefix(3)))
        try await previous.write { db in
            for sequence in 1...3 {
                try db.execute(
                    """
                    INSERT INTO outbox (seq, topic, key, type, payload, run_id, created_at, sent_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        .integer(Int64(sequence)), .text(Topic.dispatch), .text("host_a"), .text(RunDispatch.type),
                        .blob(Array("payload \(sequence)".utf8)), .text("run_\(sequence)"), .date(now),
                        sequence == 1 ? .date(now) : .null,
                    ])
            }
        }
        await previous.close()

        let store = try SQLiteStore(path: path)
        #expect(try await store.appliedMigrations() == Array(1...SQLiteSchema.migrations.count))
        let pending = try await store.pendingOutbox(after: 0, limit: 10)
        #expect(pending.map(\.sequence) == [2, 3])
        #expect(pending.map { String(decoding: $0.payload, as: UTF8.self) } == ["payload 2", "payload 3"])
        let payloads = try await store.database.read { db in
            try db.query("SELECT seq, payload FROM outbox_payloads ORDER BY seq").map {
                "\($0.int64("seq") ?? 0)=\(String(decoding: $0.blob("payload") ?? [], as: UTF8.self))"
            }
        }
        #expect(payloads == ["1=payload 1", "2=payload 2", "3=payload 3"])

        func sequences(_ table: String) async throws -> [Int64] {
            try await store.database.read { db in
                try db.query("SELECT seq FROM \(table) ORDER BY seq").compactMap { $0.int64("seq") }
            }
        }
        #expect(try await sequences("outbox_unsent") == [2, 3])

        try await store.database.write { db in try db.execute("DELETE FROM outbox WHERE seq = 2", []) }
        #expect(try await sequences("outbox_payloads") == [1, 3])
        #expect(try await sequences("outbox_unsent") == [3])
        #expect(try await store.pendingOutbox(after: 0, limit: 10).map(\.sequence) == [3])
        await store.close()
    }
}
