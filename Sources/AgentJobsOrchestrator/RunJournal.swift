import AgentJobsCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What the orchestrator knows about one run, kept durably on the host so that a restarted
/// orchestrator never launches a dispatch twice and never loses an event it owed the control plane.
public struct RunRecord: Sendable, Hashable, Codable {
    public enum Phase: String, Sendable, Hashable, Codable {
        /// Recorded; not launched yet.
        case accepted
        /// The agent was launched (``handleID`` names it).
        case launched
        /// Ended (or never to be launched); ``outcome`` says how.
        case finished
    }

    public var runId: String
    /// The dispatch, or `nil` for a cancel that arrived before (or without) its dispatch.
    public var dispatch: RunDispatch?
    public var phase: Phase
    /// The driver's id of the launched agent (container id, or pid and start time).
    public var handleID: String?
    public var launchedAt: Date?
    /// How the run ended, once it did.
    public var outcome: RunEventType?
    /// When the run ended, by this host's clock; absent from records written before retention existed.
    public var finishedAt: Date?
    /// A cancel was received; once set, the run is never launched, and a launched agent is stopped.
    public var cancelRequested: Bool
    /// When the run timeout fired and the agent was being stopped for it (the run ends `timed_out`).
    public var timeoutReachedAt: Date?
    /// The sequence number of the next event of this run.
    public var nextSequence: Int
    /// Events written but not yet acknowledged by the transport; published again after a restart.
    public var unpublished: [RunLifecycleEvent]
    /// The W3C trace context the dispatch carried (``TraceParent``), sent with the run's events.
    /// Absent from records written before tracing existed, and when tracing is off.
    public var traceParent: String?

    public init(runId: String, dispatch: RunDispatch?) {
        self.runId = runId
        self.dispatch = dispatch
        self.phase = .accepted
        self.cancelRequested = false
        self.nextSequence = 1
        self.unpublished = []
    }

    /// Appends the next event of this run (numbered) to ``unpublished`` and returns it.
    public mutating func record(
        _ type: RunEventType, hostId: String, at: Date, exitCode: Int? = nil, errorSummary: String? = nil,
        reason: String? = nil
    ) -> RunLifecycleEvent {
        let event = RunLifecycleEvent(
            type: type, runId: runId, jobId: dispatch?.jobId ?? "", hostId: hostId,
            dispatchEpoch: dispatch?.dispatchEpoch ?? 1,
            sequence: nextSequence, at: at, exitCode: exitCode, errorSummary: errorSummary, reason: reason)
        nextSequence += 1
        unpublished.append(event)
        return event
    }
}

/// The orchestrator's durable per-run state: one append-only log, `<data-dir>/journal/runs.log`,
/// with one line per change of a record (the whole record, checksummed), group-committed.
///
/// - **Durable before it returns.** ``save(_:)`` appends the record and waits for an `fdatasync` of
///   the log that covers it. Saves made while a sync is under way wait for the next one, so one sync
///   serves every run journaled in the same instant (as the SQLite store's writer does for the
///   store), instead of a file, two fsyncs and a rename per save.
/// - **Readers see only what is durable**: ``record(_:)``, ``openRecords()`` and ``prunable(before:)``
///   never show a change whose sync has not returned, so nothing is launched or published on the
///   strength of a line a crash could take back. A change is built on the newest record, durable or
///   not, so two changes of one run in the same instant both land.
/// - **A failed write or sync** fails every change not yet durable (their callers retry), and the
///   next change first replaces the log by a snapshot of what is durable: after a failed fsync the
///   kernel may have dropped the dirty pages, and only a new file is known to hold what it says.
///   A crash before that replacement may still find a failed change in the log: as with any crash
///   between a write and its acknowledgement, the caller was about to retry that very change.
/// - **Reading it back.** Lines are read up to the first one that is torn or fails its checksum;
///   that line and any after it were never acknowledged (an acknowledged line's sync covered every
///   line before it). They are kept aside in `runs.log.torn-<time>` and the log is rewritten
///   without them. A whole line (its checksum holds) that cannot be decoded stops the start: it
///   may be a record a newer version wrote, and leaving it out could launch its run again.
/// - **Compaction.** When the log holds more than four lines per record (at least 4,096), it is
///   replaced by a snapshot: written to a temporary file, fsynced, renamed over it, the directory
///   fsynced.
///
/// The journal is kept apart from the runs' own directories (`<data-dir>/runs/<run-id>/`), which
/// their agents can write: an agent must not be able to rewrite what the orchestrator trusts (which
/// runs were launched, the events it signs and publishes).
///
/// The actor runs on its own dispatch queue rather than on the cooperative thread pool, and its
/// syncs on another: a snapshot blocks in fsyncs, and on a small machine a pool thread blocked in
/// them holds up every other task of the process (the dispatch consumer, the transport, other runs).
public actor RunJournal {
    /// Where each run's own directory (logs, agent files) is.
    public nonisolated let runsDirectory: URL
    /// Where the log is.
    public nonisolated let journalDirectory: URL
    /// The log's path.
    nonisolated var logPath: String { journalDirectory.appendingPathComponent(Self.logName).path }
    static let logName = "runs.log"

    /// What is durable.
    private var records: [String: RunRecord]
    /// Changes appended but not yet covered by a sync, in order (`nil`: the run is forgotten).
    private var unsynced: [(ticket: Int, runId: String, record: RunRecord?)] = []
    /// Open runs whose published marks are in memory only (``markPublished(runId:upTo:)``).
    private var marksInMemory: Set<String> = []
    /// The newest unsynced change of each run.
    private var newest: [String: (ticket: Int, record: RunRecord?)] = [:]
    /// Callers waiting for their change to be durable.
    private var waiters: [(ticket: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    /// The number of the last change appended.
    private var appended = 0
    private var syncing = false
    /// Syncs of the log so far (group commits; a snapshot counts as one).
    private(set) var syncs = 0
    /// A write or sync failed: the log is replaced by a snapshot before anything else is appended.
    private var mustRewrite = false
    private var linesInLog: Int
    private var log: Int32
    /// Descriptors of replaced logs, closed once the sync under way on one of them returns.
    private var retired: [Int32] = []
    private nonisolated let executor = DispatchQueueExecutor(label: "agentjobs.run-journal")
    private nonisolated let syncQueue = DispatchQueue(label: "agentjobs.run-journal.sync")

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Opens the journal, reading every run recorded so far. Records an earlier version kept one
    /// file per run (`journal/<run-id>.json`, and before that `runs/<run-id>/run.json`) are moved
    /// into the log.
    /// - Throws: ``OrchestratorError`` when the directories cannot be created or the log cannot be
    ///   read or written.
    public init(dataDirectory: URL) throws {
        runsDirectory = dataDirectory.appendingPathComponent("runs")
        journalDirectory = dataDirectory.appendingPathComponent("journal")
        let journalPath = journalDirectory.path
        let logPath = journalDirectory.appendingPathComponent(Self.logName).path
        do {
            try PrivateFiles.directory(journalPath)
            try FileManager.default.createDirectory(at: runsDirectory, withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: journalPath)
            where name.hasPrefix(Self.logName + ".tmp-") {
                unlink(journalPath + "/" + name)
            }
            let existing = try JournalLog.load(logPath)
            var records = existing?.records ?? [:]
            let legacy = try Self.legacyRecords(
                journalDirectory: journalDirectory, runsDirectory: runsDirectory, skipping: Set(records.keys))
            for record in legacy.records where records[record.runId] == nil { records[record.runId] = record }
            let rewritten = existing == nil || existing?.tornTail == true || !legacy.files.isEmpty
            if rewritten {
                try PrivateFiles.write(JournalLog.snapshot(records.values), to: logPath)
                for path in legacy.files { unlink(path) }
            }
            self.records = records
            self.linesInLog = rewritten ? records.count : existing?.lines ?? 0
            self.log = try JournalLog.openForAppending(logPath)
        } catch let error as OrchestratorError {
            throw error
        } catch {
            throw OrchestratorError(
                code: .hostNotSetUp,
                message: "cannot open the run journal at \(journalPath): \(error)")
        }
    }

    deinit { close(log) }

    /// Records an earlier version kept one file per run: `journal/<run-id>.json`, and before that
    /// `runs/<run-id>/run.json` (a plain file only; the run directory is the agent's). A finished
    /// record without an end time takes its file's last change as one.
    private static func legacyRecords(journalDirectory: URL, runsDirectory: URL, skipping: Set<String>) throws
        -> (records: [RunRecord], files: [String])
    {
        var records: [RunRecord] = []
        var files: [String] = []
        var seen = skipping
        for name in try FileManager.default.contentsOfDirectory(atPath: journalDirectory.path)
        where name.hasSuffix(".json") && !name.hasPrefix(".") {
            let path = journalDirectory.appendingPathComponent(name).path
            files.append(path)
            guard !seen.contains(String(name.dropLast(5))) else { continue }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw OrchestratorError(code: .fileSystem, message: "cannot read the journal record \(path)")
            }
            do {
                var record = try WireJSON.decoder.decode(RunRecord.self, from: data)
                if record.phase == .finished, record.finishedAt == nil { record.finishedAt = lastChange(path) }
                records.append(record)
                seen.insert(record.runId)
            } catch {
                throw OrchestratorError(
                    code: .fileSystem,
                    message: "the journal record \(path) is not readable; move it away to start without it",
                    detail: "\(error)")
            }
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: runsDirectory.path) where !seen.contains(name) {
            let path = runsDirectory.appendingPathComponent(name).appendingPathComponent("run.json").path
            guard let (bytes, truncated) = RunDirectoryFiles.tail(path, maxBytes: 16 << 20), !truncated,
                var record = try? WireJSON.decoder.decode(RunRecord.self, from: Data(bytes)), record.runId == name
            else { continue }
            if record.phase == .finished, record.finishedAt == nil { record.finishedAt = lastChange(path) }
            records.append(record)
            files.append(path)
        }
        return (records, files)
    }

    /// When a file last changed (the distant future when it cannot be read, so its record is kept).
    private static func lastChange(_ path: String) -> Date {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date) ?? .distantFuture
    }

    /// The directory of one run's own files (logs, agent files), which its agent can write.
    public nonisolated func directory(of runId: String) -> URL {
        runsDirectory.appendingPathComponent(runId)
    }

    /// A run's durable record.
    public func record(_ runId: String) -> RunRecord? { records[runId] }

    /// How many events wait to be published, over every record.
    public func unpublishedEventCount() -> Int {
        records.values.reduce(0) { $0 + $1.unpublished.count }
    }

    /// Runs not finished yet, and runs with events still to publish.
    public func openRecords() -> [RunRecord] {
        records.values.filter { $0.phase != .finished || !$0.unpublished.isEmpty }.sorted { $0.runId < $1.runId }
    }

    /// Stores a record durably before returning.
    /// - Throws: A file-system error; the record is then not stored.
    public func save(_ record: RunRecord) async throws {
        let start = ContinuousClock.now
        try await durable(try append(record.runId, record))
        HostMetrics.journalWrite.record(ContinuousClock.now - start)
    }

    /// Changes a record (its newest version, durable or not) and stores it durably.
    /// - Returns: The record after the change.
    @discardableResult
    public func update(_ runId: String, _ change: (inout RunRecord) -> Void) async throws -> RunRecord? {
        guard var record = newestRecord(runId) else { return nil }
        change(&record)
        try await save(record)
        return record
    }

    /// Runs whose traces on this host may go: ended before `cutoff` with every event published, and
    /// with a queue deadline before `cutoff` too, so that a dispatch delivered again after its record
    /// is gone (a consumer group's offsets reset) is refused as expired, never launched a second
    /// time. A cancel's record without a dispatch (the dispatch never came) cannot tell the
    /// deadline, which is at most the longest queue timeout after the cancel.
    public func prunable(before cutoff: Date) -> [String] {
        let longestQueueTimeout = Double(Job.Limits.queueTimeoutRange.upperBound)
        return records.values.filter { record in
            guard record.phase == .finished, record.unpublished.isEmpty, let end = record.finishedAt else {
                return false
            }
            let deadline = record.dispatch?.queueDeadline ?? end.addingTimeInterval(longestQueueTimeout)
            return end < cutoff && deadline < cutoff
        }.map(\.runId).sorted()
    }

    /// Deletes a run's record. Used only for a run ``prunable(before:)`` returned, once its
    /// directory is gone; a crash before the deletion reaches the disk brings the record back,
    /// which does no harm (it is deleted again at the next pass).
    /// - Throws: ``OrchestratorError`` (`fileSystem`) when the log cannot be written.
    public func forget(_ runId: String) async throws {
        guard newestRecord(runId) != nil else { return }
        try await durable(try append(runId, nil))
    }

    /// Drops published events from a record.
    ///
    /// Only a finished record is written at once. For a run that is still open the change stays in
    /// memory and reaches the disk with the record's next change (its launch or its end, which is
    /// always written): until then a crash leaves the events listed as unpublished, and the
    /// restarted orchestrator publishes them again, which consumers deduplicate by event id. So
    /// nothing the contract needs is lost, and the path from dispatch to `started` saves two
    /// journal writes, one after `accepted` and one after `started`.
    public func markPublished(runId: String, upTo sequence: Int) async throws {
        guard var record = newestRecord(runId) else { return }
        let before = record.unpublished.count
        record.unpublished.removeAll { $0.sequence <= sequence }
        guard record.unpublished.count != before else { return }
        // Every version in memory forgets them: a change still to be synced must not bring them back.
        records[runId]?.unpublished.removeAll { $0.sequence <= sequence }
        for index in unsynced.indices where unsynced[index].runId == runId {
            unsynced[index].record?.unpublished.removeAll { $0.sequence <= sequence }
        }
        newest[runId]?.record?.unpublished.removeAll { $0.sequence <= sequence }
        if record.phase == .finished {
            try await save(record)
        } else {
            marksInMemory.insert(runId)
        }
    }

    /// Writes the published marks kept in memory (at a graceful stop), in one group commit.
    /// - Throws: A file-system error; the marks are then written with the runs' next changes, or
    ///   the events sent again after a restart.
    public func writePublishedMarks() async throws {
        let runIds = marksInMemory
        marksInMemory = []
        try await withThrowingTaskGroup(of: Void.self) { group in
            for runId in runIds {
                guard let record = newestRecord(runId) else { continue }
                group.addTask { try await self.save(record) }
            }
            try await group.waitForAll()
        }
    }

    // MARK: group commit

    private func newestRecord(_ runId: String) -> RunRecord? {
        if let pending = newest[runId] { return pending.record }
        return records[runId]
    }

    /// Appends a change to the log (not durable yet).
    /// - Returns: Its number, for ``durable(_:)``.
    private func append(_ runId: String, _ record: RunRecord?) throws -> Int {
        if mustRewrite { try rewrite() }
        let line = try JournalLog.line(record.map(JournalLog.Entry.record) ?? .forget(runId))
        do {
            try JournalLog.writeAll(log, line)
        } catch {
            fail(error)
            throw error
        }
        appended += 1
        linesInLog += 1
        unsynced.append((appended, runId, record))
        newest[runId] = (appended, record)
        marksInMemory.remove(runId)
        return appended
    }

    /// Returns once change `ticket` is durable.
    /// - Throws: The error of the write or sync that failed it.
    private func durable(_ ticket: Int) async throws {
        try await withCheckedThrowingContinuation { continuation in
            waiters.append((ticket, continuation))
            syncIfIdle()
        }
    }

    /// Starts a sync of everything appended so far unless one is under way (the waiters that
    /// arrive meanwhile are served by the next), or replaces the log when it is due for compaction.
    private func syncIfIdle() {
        guard !syncing, !waiters.isEmpty else { return }
        if linesInLog > max(4096, 4 * (records.count + newest.count)) {
            do {
                try rewrite()
            } catch {
                fail(error)
            }
            return
        }
        syncing = true
        let descriptor = log
        let upTo = appended
        let queue = syncQueue
        Task {
            let result = await withCheckedContinuation { continuation in
                queue.async { continuation.resume(returning: fdatasync(descriptor) == 0 ? 0 : errno) }
            }
            synced(upTo: upTo, errno: result)
        }
    }

    private func synced(upTo: Int, errno code: Int32) {
        syncing = false
        syncs += 1
        for descriptor in retired { close(descriptor) }
        retired = []
        if code == 0 {
            completed(upTo: upTo)
        } else {
            fail(
                OrchestratorError(
                    code: .fileSystem, message: "could not sync the run journal \(logPath)",
                    detail: String(cString: strerror(code))))
        }
        syncIfIdle()
    }

    /// Changes up to `ticket` are durable: they become what readers see, and their callers return.
    private func completed(upTo ticket: Int) {
        var done = 0
        for change in unsynced {
            guard change.ticket <= ticket else { break }
            records[change.runId] = change.record
            if newest[change.runId]?.ticket == change.ticket { newest[change.runId] = nil }
            done += 1
        }
        unsynced.removeFirst(done)
        var still: [(ticket: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        for waiter in waiters {
            if waiter.ticket <= ticket {
                waiter.continuation.resume()
            } else {
                still.append(waiter)
            }
        }
        waiters = still
    }

    /// Every change not yet durable fails; the log is replaced before the next one.
    private func fail(_ error: any Error) {
        unsynced = []
        newest = [:]
        for waiter in waiters { waiter.continuation.resume(throwing: error) }
        waiters = []
        mustRewrite = true
    }

    /// Replaces the log by a snapshot of every record, durable or not; all of them are durable after.
    private func rewrite() throws {
        var all = records
        for change in unsynced { all[change.runId] = change.record }
        try PrivateFiles.write(JournalLog.snapshot(all.values), to: logPath)
        // A sync under way on the old descriptor (of changes that failed) must not find it reused.
        if syncing { retired.append(log) } else { close(log) }
        log = -1
        log = try JournalLog.openForAppending(logPath)
        mustRewrite = false
        syncs += 1
        linesInLog = all.count
        completed(upTo: appended)
    }
}

/// The journal's file format: one line per change, `<checksum> <JSON>\n`, where the checksum is
/// the FNV-1a 64-bit hash of the JSON in 16 hexadecimal digits and the JSON is `{"record": …}` (a
/// run's whole record) or `{"forget": "<run-id>"}`. The last line of a run wins.
enum JournalLog {
    enum Entry: Codable {
        case record(RunRecord)
        case forget(String)

        private enum CodingKeys: String, CodingKey { case record, forget }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            if let runId = try container.decodeIfPresent(String.self, forKey: .forget) {
                self = .forget(runId)
            } else {
                self = .record(try container.decode(RunRecord.self, forKey: .record))
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            switch self {
            case .record(let record): try container.encode(record, forKey: .record)
            case .forget(let runId): try container.encode(runId, forKey: .forget)
            }
        }
    }

    static func line(_ entry: Entry) throws -> [UInt8] {
        framed(Array(try WireJSON.encoder.encode(entry)))
    }

    /// One line of the log holding `body`.
    static func framed(_ body: [UInt8]) -> [UInt8] {
        var line = Array(hex(checksum(body[...])).utf8)
        line.reserveCapacity(line.count + body.count + 2)
        line.append(0x20)
        line.append(contentsOf: body)
        line.append(0x0A)
        return line
    }

    static func snapshot(_ records: some Sequence<RunRecord>) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for record in records.sorted(by: { $0.runId < $1.runId }) {
            bytes.append(contentsOf: try line(.record(record)))
        }
        return bytes
    }

    /// The records of the log at `path` and its number of lines, or nil when there is none.
    /// `tornTail` says that lines at its end were unreadable and left out (never acknowledged; the
    /// log is to be rewritten).
    /// - Throws: ``OrchestratorError`` when the log cannot be read or holds a whole line that
    ///   cannot be decoded.
    static func load(_ path: String) throws -> (records: [String: RunRecord], lines: Int, tornTail: Bool)? {
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT { return nil }
            throw AgentLogFiles.fileError("cannot read the run journal \(path)")
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else {
                throw AgentLogFiles.fileError("cannot read the run journal \(path)")
            }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[..<count])
        }
        var records: [String: RunRecord] = [:]
        var start = 0
        var lines = 0
        while start < bytes.count {
            guard let end = bytes[start...].firstIndex(of: 0x0A), let body = body(of: bytes[start..<end]) else {
                try keepTornTail(bytes[start...], of: path)
                return (records, lines, true)
            }
            let entry: Entry
            do {
                entry = try WireJSON.decoder.decode(Entry.self, from: Data(body))
            } catch {
                // Whole (its checksum holds) yet unreadable: written by a newer version, or a bug.
                // Leaving it out could launch its run a second time.
                throw OrchestratorError(
                    code: .fileSystem,
                    message:
                        "line \(lines + 1) of the run journal \(path) is whole but cannot be read (written by a newer version?); start that version, or move the journal away to start without it (its runs are then forgotten by this host)",
                    detail: "\(error)")
            }
            switch entry {
            case .record(let record): records[record.runId] = record
            case .forget(let runId): records[runId] = nil
            }
            lines += 1
            start = end + 1
        }
        return (records, lines, false)
    }

    /// Keeps what follows the last whole line beside the log (`runs.log.torn-<time>`) before the
    /// log is rewritten without it: never acknowledged, but worth a look when it is more than one
    /// half-written line.
    private static func keepTornTail(_ bytes: ArraySlice<UInt8>, of path: String) throws {
        let kept = path + ".torn-\(Int(Date().timeIntervalSince1970))"
        try PrivateFiles.write(Array(bytes), to: kept)
    }

    /// One line's JSON, or nil when the line is torn or fails its checksum.
    private static func body(of line: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        guard line.count > 17, line[line.startIndex + 16] == 0x20 else { return nil }
        let body = line[(line.startIndex + 17)...]
        guard String(decoding: line.prefix(16), as: UTF8.self) == hex(checksum(body)) else { return nil }
        return body
    }

    private static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    static func openForAppending(_ path: String) throws -> Int32 {
        let descriptor = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw AgentLogFiles.fileError("cannot open the run journal \(path)")
        }
        return descriptor
    }

    static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) throws {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else {
                throw AgentLogFiles.fileError("could not write the run journal")
            }
            written += result
        }
    }
}

/// Runs an actor's jobs on a serial dispatch queue (a thread outside the cooperative pool).
final class DispatchQueueExecutor: SerialExecutor {
    private let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }
}
