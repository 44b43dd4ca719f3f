import AgentJobsCore
import Foundation
import Testing

@testable import AgentJobsOrchestrator

@Suite("Run journal")
struct RunJournalTests {
    func withDirectory(_ body: (URL) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-journal-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try await body(directory)
    }

    /// The unpublished events a restarted orchestrator would find on disk.
    func unpublishedAfterRestart(_ directory: URL, _ runId: String) async throws -> [Int]? {
        try await RunJournal(dataDirectory: directory).record(runId)?.unpublished.map(\.sequence)
    }

    @Test("an open run's published mark is written with its next change; a restart before that publishes again")
    func openRunPublishedMarkIsWrittenWithTheNextChange() async throws {
        try await withDirectory { directory in
            let journal = try RunJournal(dataDirectory: directory)
            var record = RunRecord(runId: "run-1", dispatch: nil)
            _ = record.record(.accepted, hostId: "host-1", at: Date())
            try await journal.save(record)

            try await journal.markPublished(runId: "run-1", upTo: 1)
            #expect(await journal.record("run-1")?.unpublished.isEmpty == true)
            #expect(await journal.openRecords().map(\.runId) == ["run-1"])
            // Not written yet: a crash now republishes `accepted` (consumers deduplicate by event id).
            #expect(try await unpublishedAfterRestart(directory, "run-1") == [1])

            try await journal.update("run-1") { record in
                record.phase = .launched
                _ = record.record(.started, hostId: "host-1", at: Date())
            }
            #expect(try await unpublishedAfterRestart(directory, "run-1") == [2])
        }
    }

    @Test("a finished run's published mark is written at once, so a restart has nothing left to publish for it")
    func finishedRunPublishedMarkIsWrittenAtOnce() async throws {
        try await withDirectory { directory in
            let journal = try RunJournal(dataDirectory: directory)
            var record = RunRecord(runId: "run-2", dispatch: nil)
            record.phase = .finished
            record.outcome = .canceled
            _ = record.record(.canceled, hostId: "host-1", at: Date())
            try await journal.save(record)
            #expect(try await unpublishedAfterRestart(directory, "run-2") == [1])

            try await journal.markPublished(runId: "run-2", upTo: 1)
            #expect(try await unpublishedAfterRestart(directory, "run-2") == [])
            #expect(try await RunJournal(dataDirectory: directory).openRecords().isEmpty)
        }
    }
}
