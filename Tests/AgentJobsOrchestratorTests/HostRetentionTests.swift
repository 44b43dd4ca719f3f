import AgentJobsCore
import Foundation
import Testing

@testable import AgentJobsOrchestrator

#if canImport(Glibc)
    import Glibc
#endif

/// What a host keeps of ended runs, and how it lets go of it.
@Suite("Host run retention", .timeLimit(.minutes(1)))
struct HostRetentionTests {
    static func scratch() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-retention-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// What a hostile agent leaves in its run directory: links to files and directories outside it, a
    /// FIFO, a hard link, nested directories and a name that is not UTF-8.
    static func plantHostileFiles(in runDirectory: URL, outside: URL) throws {
        let run = runDirectory.path
        try FileManager.default.createDirectory(atPath: run + "/a/b/c", withIntermediateDirectories: true)
        try Data("log".utf8).write(to: URL(fileURLWithPath: run + "/stdout.log"))
        try Data("deep".utf8).write(to: URL(fileURLWithPath: run + "/a/b/c/file"))
        #expect(symlink(outside.path + "/secret", run + "/link-to-file") == 0)
        #expect(symlink(outside.path, run + "/a/link-to-directory") == 0)
        #expect(link(outside.path + "/secret", run + "/hard-link") == 0)
        #expect(mkfifo(run + "/a/b/fifo", 0o600) == 0)
        let name: [CChar] = Array((run + "/\u{1}").utf8CString.dropLast()) + [-1, -2, 0]
        let descriptor = open(name, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        #expect(descriptor >= 0)
        close(descriptor)
        // Read-only for its owner: removal works through the directory's permission, not the file's.
        #expect(chmod(run + "/stdout.log", 0o400) == 0)
    }

    @Test("a run directory is removed whole without following the links an agent planted in it")
    func removeTreeKeepsOutsideFiles() throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let outside = root.appendingPathComponent("outside")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: outside.appendingPathComponent("secret"))
        let runDirectory = root.appendingPathComponent("runs/run-1")
        try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
        try Self.plantHostileFiles(in: runDirectory, outside: outside)

        try RunDirectoryFiles.removeTree(runDirectory.path)
        #expect(!FileManager.default.fileExists(atPath: runDirectory.path))
        #expect(contents(outside.path + "/secret") == "keep me")
        #expect(FileManager.default.fileExists(atPath: root.path + "/runs"))
        // Gone already: nothing to do.
        try RunDirectoryFiles.removeTree(runDirectory.path)
    }

    @Test("nesting deeper than the limit is refused with the path, and what was removed stays removed")
    func removeTreeDepthLimit() throws {
        let root = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let runDirectory = root.appendingPathComponent("run-1")
        try FileManager.default.createDirectory(
            atPath: runDirectory.path + "/1/2/3/4", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: runDirectory.appendingPathComponent("top.log"))
        #expect(throws: OrchestratorError.self) { try RunDirectoryFiles.removeTree(runDirectory.path, maxDepth: 3) }
        #expect(!FileManager.default.fileExists(atPath: runDirectory.path + "/top.log"))
        try RunDirectoryFiles.removeTree(runDirectory.path, maxDepth: 5)
        #expect(!FileManager.default.fileExists(atPath: runDirectory.path))
    }

    @Test("a cancel's record without its dispatch is kept until the longest queue timeout after the cancel passed")
    func tombstoneOutlivesAnyQueueDeadline() async throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let journal = try RunJournal(dataDirectory: directory)
        let canceledAt = Date()
        var tombstone = RunRecord(runId: "run-canceled-early", dispatch: nil)
        tombstone.cancelRequested = true
        tombstone.phase = .finished
        tombstone.outcome = .canceled
        tombstone.finishedAt = canceledAt
        try await journal.save(tombstone)
        let day: TimeInterval = 24 * 3600
        // A day's retention would let the dispatch (queued before the cancel, up to 7 days of queue
        // timeout) arrive after the record is gone and still be within its deadline.
        #expect(await journal.prunable(before: canceledAt.addingTimeInterval(1 * day)).isEmpty)
        #expect(await journal.prunable(before: canceledAt.addingTimeInterval(7 * day)).isEmpty)
        #expect(await journal.prunable(before: canceledAt.addingTimeInterval(7 * day + 1)) == ["run-canceled-early"])
    }

    @Test(
        "an ended run's directory and record go after the retention; its dispatch delivered again is refused as expired, not launched"
    )
    func prunedRunIsNeverLaunchedAgain() async throws {
        let tests = HostWorkerTests()
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let outside = directory.appendingPathComponent("outside")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: outside.appendingPathComponent("secret"))
        let dispatch = tests.dispatch("run-1")
        let active = tests.dispatch("run-2")

        // The run ends; another one is journaled but never finished (a crash before its launch).
        let consumer = ScriptedConsumer([try tests.message(dispatch, offset: 0)])
        let producer = RecordingProducer()
        try await tests.run(try tests.worker(directory, consumer, producer, CountingDriver())) {
            producer.events(of: "run-1").contains { $0.type == .succeeded } && !consumer.committed.isEmpty
        }
        try await tests.journal(active, in: directory)
        let journal = try RunJournal(dataDirectory: directory)
        try FileManager.default.createDirectory(at: journal.directory(of: "run-1"), withIntermediateDirectories: true)
        try Self.plantHostileFiles(in: journal.directory(of: "run-1"), outside: outside)
        try FileManager.default.createDirectory(at: journal.directory(of: "run-2"), withIntermediateDirectories: true)

        // Two hours on, with a retention of one hour: run-1 ended and its queue deadline (10 min) passed.
        let later: @Sendable () -> Date = { Date().addingTimeInterval(2 * 3600) }
        var configuration = HostWorker<ScriptedConsumer>.Configuration()
        configuration.runRetention = .seconds(3600)
        let redelivered = ScriptedConsumer([try tests.message(dispatch, offset: 0)])
        let driver = CountingDriver()
        let worker = try tests.worker(
            directory, redelivered, producer, driver, configuration: configuration, clock: later)
        #expect(await worker.journal.prunable(before: Date()).isEmpty)
        #expect(await worker.pruneRuns(endedBefore: later().addingTimeInterval(-3600)) == 1)
        #expect(!FileManager.default.fileExists(atPath: journal.directory(of: "run-1").path))
        #expect(try await RunJournal(dataDirectory: directory).record("run-1") == nil)
        #expect(contents(outside.path + "/secret") == "keep me")
        #expect(FileManager.default.fileExists(atPath: journal.directory(of: "run-2").path))
        #expect(await worker.journal.record("run-2") != nil)

        try await tests.run(worker) {
            producer.events(of: "run-1").contains { $0.type == .timedOut } && !redelivered.committed.isEmpty
        }
        #expect(!driver.launches.contains("run-1"))
    }
}
