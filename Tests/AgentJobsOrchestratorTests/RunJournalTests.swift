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

    @Test("a graceful stop writes the open runs' published marks, so the next start sends nothing again")
    func publishedMarksAreWrittenAtAStop() async throws {
        try await withDirectory { directory in
            let journal = try RunJournal(dataDirectory: directory)
            for runId in ["run-1", "run-2"] {
                var record = RunRecord(runId: runId, dispatch: nil)
                _ = record.record(.accepted, hostId: "host-1", at: Date())
                try await journal.save(record)
                try await journal.markPublished(runId: runId, upTo: 1)
            }
            #expect(try await unpublishedAfterRestart(directory, "run-1") == [1])
            try await journal.writePublishedMarks()
            #expect(try await unpublishedAfterRestart(directory, "run-1") == [])
            #expect(try await unpublishedAfterRestart(directory, "run-2") == [])
            #expect(try await RunJournal(dataDirectory: directory).openRecords().count == 2)
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

    func finished(_ runId: String, at end: Date? = Date()) -> RunRecord {
        var record = RunRecord(runId: runId, dispatch: nil)
        record.phase = .finished
        record.outcome = .canceled
        record.finishedAt = end
        return record
    }

    func logLines(_ directory: URL) throws -> [Substring] {
        let text = try String(contentsOf: directory.appendingPathComponent("journal/runs.log"), encoding: .utf8)
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
    }

    @Test("saves made in the same instant share syncs, and every one of them is durable when it returns")
    func concurrentSavesShareSyncs() async throws {
        try await withDirectory { directory in
            let journal = try RunJournal(dataDirectory: directory)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<400 {
                    group.addTask { try await journal.save(finished("run-\(index)")) }
                }
                try await group.waitForAll()
            }
            #expect(await journal.openRecords().isEmpty)
            #expect(await journal.record("run-399")?.outcome == .canceled)
            let syncs = await journal.syncs
            #expect(syncs >= 1 && syncs < 400, "400 saves took \(syncs) syncs")
            let reopened = try RunJournal(dataDirectory: directory)
            for index in 0..<400 { #expect(await reopened.record("run-\(index)") != nil) }
        }
    }

    @Test("two changes of one run in the same instant both land")
    func concurrentUpdatesOfOneRunBothLand() async throws {
        try await withDirectory { directory in
            let journal = try RunJournal(dataDirectory: directory)
            try await journal.save(RunRecord(runId: "run-1", dispatch: nil))
            async let launched = journal.update("run-1") { $0.phase = .launched }
            async let canceled = journal.update("run-1") { $0.cancelRequested = true }
            _ = try await (launched, canceled)
            let reopened = try RunJournal(dataDirectory: directory)
            for record in [await journal.record("run-1"), await reopened.record("run-1")] {
                #expect(record?.phase == .launched)
                #expect(record?.cancelRequested == true)
            }
        }
    }

    @Test("a torn or corrupt line ends what is read: it and the lines after it were never acknowledged")
    func tornTailIsDropped() async throws {
        try await withDirectory { directory in
            let journal = try RunJournal(dataDirectory: directory)
            try await journal.save(finished("run-1"))
            try await journal.save(finished("run-2"))
            try await journal.forget("run-1")
            var lines = try logLines(directory)
            #expect(lines.count == 3)
            // A line whose checksum fails, one after it, and a torn last line.
            lines.append(Substring("0123456789abcdef {\"forget\":\"run-2\"}"))
            let valid = try #require(lines.first { $0.contains("run-2") })
            lines.append(valid)
            let text = lines.joined(separator: "\n") + "\n" + valid.prefix(40)
            try text.write(to: directory.appendingPathComponent("journal/runs.log"), atomically: false, encoding: .utf8)

            let reopened = try RunJournal(dataDirectory: directory)
            #expect(await reopened.record("run-1") == nil)
            #expect(await reopened.record("run-2") != nil)
            // The log was rewritten without the unreadable lines, so new lines are read after them;
            // those are kept beside it.
            #expect(try logLines(directory).count == 1)
            let kept = try FileManager.default.contentsOfDirectory(atPath: directory.path + "/journal")
                .filter { $0.hasPrefix("runs.log.torn-") }
            try #require(kept.count == 1)
            let tail = try String(contentsOfFile: directory.path + "/journal/" + kept[0], encoding: .utf8)
            #expect(tail.hasPrefix("0123456789abcdef"))
            try await reopened.save(finished("run-3"))
            #expect(try await RunJournal(dataDirectory: directory).record("run-3") != nil)
        }
    }

    @Test("a whole line that cannot be decoded (a newer version's record) stops the start instead of being left out")
    func undecodableWholeLineStopsTheStart() async throws {
        try await withDirectory { directory in
            try await RunJournal(dataDirectory: directory).save(finished("run-1"))
            let log = directory.appendingPathComponent("journal/runs.log")
            let future = JournalLog.framed(Array(#"{"future":"run-9"}"#.utf8))
            try (future + Array(try Data(contentsOf: log))).withUnsafeBytes { try Data($0).write(to: log) }
            let error = #expect(throws: OrchestratorError.self) { try RunJournal(dataDirectory: directory) }
            #expect(error?.message.contains("line 1 of the run journal") == true)
            // Nothing was rewritten: the line is still there for the version that wrote it.
            #expect(try logLines(directory).count == 2)
        }
    }

    @Test("the log is compacted: many changes of few runs leave a few lines, and the newest version of each")
    func logIsCompacted() async throws {
        try await withDirectory { directory in
            let journal = try RunJournal(dataDirectory: directory)
            try await journal.save(RunRecord(runId: "run-1", dispatch: nil))
            try await journal.save(RunRecord(runId: "run-2", dispatch: nil))
            for step in 1...4_300 {
                try await journal.update(step.isMultiple(of: 2) ? "run-1" : "run-2") { $0.nextSequence = step }
            }
            #expect(try logLines(directory).count < 1_000)
            let reopened = try RunJournal(dataDirectory: directory)
            #expect(await reopened.record("run-1")?.nextSequence == 4_300)
            #expect(await reopened.record("run-2")?.nextSequence == 4_299)
        }
    }

    @Test("records an earlier version kept one file per run are moved into the log, their end time kept")
    func perRunFilesAreMigrated() async throws {
        try await withDirectory { directory in
            let journalDirectory = directory.appendingPathComponent("journal")
            try FileManager.default.createDirectory(at: journalDirectory, withIntermediateDirectories: true)
            let legacy = journalDirectory.appendingPathComponent("run-old.json")
            try WireJSON.encoder.encode(finished("run-old", at: nil)).write(to: legacy)
            let changed = Date(timeIntervalSince1970: 1_700_000_000)
            try FileManager.default.setAttributes([.modificationDate: changed], ofItemAtPath: legacy.path)
            let open = journalDirectory.appendingPathComponent("run-open.json")
            try WireJSON.encoder.encode(RunRecord(runId: "run-open", dispatch: nil)).write(to: open)

            let journal = try RunJournal(dataDirectory: directory)
            #expect(await journal.record("run-old")?.finishedAt == changed)
            #expect(await journal.openRecords().map(\.runId) == ["run-open"])
            #expect(!FileManager.default.fileExists(atPath: legacy.path))
            #expect(!FileManager.default.fileExists(atPath: open.path))
            let reopened = try RunJournal(dataDirectory: directory)
            #expect(await reopened.record("run-old")?.finishedAt == changed)
            #expect(await reopened.record("run-open")?.phase == .accepted)
        }
    }
}
