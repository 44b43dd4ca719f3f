import AgentJobsCore
import Foundation

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

/// The orchestrator's durable per-run state: one JSON file per run under
/// `<data-dir>/journal/<run-id>.json`, replaced atomically (write, fsync, rename, fsync dir).
///
/// The journal is kept apart from the runs' own directories (`<data-dir>/runs/<run-id>/`), which
/// their agents can write: an agent must not be able to rewrite what the orchestrator trusts (which
/// runs were launched, the events it signs and publishes).
///
/// The actor runs on its own dispatch queue rather than on the cooperative thread pool: every save
/// blocks in two fsyncs, and on a small machine a pool thread blocked in them holds up every other
/// task of the process (the dispatch consumer, the transport, other runs).
public actor RunJournal {
    /// Where each run's own directory (logs, agent files) is.
    public nonisolated let runsDirectory: URL
    /// Where the records are.
    public nonisolated let journalDirectory: URL
    private var records: [String: RunRecord] = [:]
    private nonisolated let executor = DispatchQueueExecutor(label: "agentjobs.run-journal")

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Opens the journal, reading every run recorded so far. Records an earlier version kept inside
    /// the run directories (`runs/<run-id>/run.json`) are moved into the journal.
    /// - Throws: ``OrchestratorError`` when the directories cannot be created or a record cannot be read.
    public init(dataDirectory: URL) throws {
        runsDirectory = dataDirectory.appendingPathComponent("runs")
        journalDirectory = dataDirectory.appendingPathComponent("journal")
        do {
            try PrivateFiles.directory(journalDirectory.path)
            try FileManager.default.createDirectory(at: runsDirectory, withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: journalDirectory.path)
            where name.hasSuffix(".json") && !name.hasPrefix(".") {
                let path = journalDirectory.appendingPathComponent(name).path
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw OrchestratorError(code: .fileSystem, message: "cannot read the journal record \(path)")
                }
                do {
                    let record = try WireJSON.decoder.decode(RunRecord.self, from: data)
                    records[record.runId] = record
                } catch {
                    throw OrchestratorError(
                        code: .fileSystem,
                        message: "the journal record \(path) is not readable; move it away to start without it",
                        detail: "\(error)")
                }
            }
            for record in try Self.moveLegacyRecords(
                from: runsDirectory, to: journalDirectory, skipping: Set(records.keys))
            {
                records[record.runId] = record
            }
        } catch let error as OrchestratorError {
            throw error
        } catch {
            throw OrchestratorError(
                code: .hostNotSetUp,
                message: "cannot open the run journal at \(journalDirectory.path): \(error.localizedDescription)")
        }
    }

    /// Moves `runs/<run-id>/run.json` of an earlier version into the journal (a plain file only).
    /// - Returns: The records moved.
    private static func moveLegacyRecords(from runsDirectory: URL, to journalDirectory: URL, skipping: Set<String>)
        throws -> [RunRecord]
    {
        var moved: [RunRecord] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: runsDirectory.path)
        where !skipping.contains(name) {
            let legacy = runsDirectory.appendingPathComponent(name).appendingPathComponent("run.json").path
            guard let (bytes, truncated) = RunDirectoryFiles.tail(legacy, maxBytes: 16 << 20), !truncated,
                let record = try? WireJSON.decoder.decode(RunRecord.self, from: Data(bytes)), record.runId == name
            else { continue }
            try PrivateFiles.write(bytes, to: journalDirectory.appendingPathComponent("\(name).json").path)
            unlink(legacy)
            moved.append(record)
        }
        return moved
    }

    /// The directory of one run's own files (logs, agent files), which its agent can write.
    public nonisolated func directory(of runId: String) -> URL {
        runsDirectory.appendingPathComponent(runId)
    }

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
    public func save(_ record: RunRecord) throws {
        // Atomic (temporary file, fsync, rename, fsync of the directory): after a crash the record is
        // the old or the new one, and a new record's directory entry survives a power loss too.
        let start = ContinuousClock.now
        try PrivateFiles.write(
            Array(try WireJSON.encoder.encode(record)),
            to: journalDirectory.appendingPathComponent("\(record.runId).json").path)
        HostMetrics.journalWrite.record(ContinuousClock.now - start)
        records[record.runId] = record
    }

    /// Changes a record and stores it durably.
    /// - Returns: The record after the change.
    @discardableResult
    public func update(_ runId: String, _ change: (inout RunRecord) -> Void) throws -> RunRecord? {
        guard var record = records[runId] else { return nil }
        change(&record)
        try save(record)
        return record
    }

    /// Runs whose traces on this host may go: ended before `cutoff` with every event published, and
    /// with a queue deadline before `cutoff` too, so that a dispatch delivered again after its record
    /// is gone (a consumer group's offsets reset) is refused as expired, never launched a second
    /// time. A cancel's record without a dispatch (the dispatch never came) cannot tell the
    /// deadline, which is at most the longest queue timeout after the cancel. A record without an
    /// end time (written by an earlier version) counts from its file's last change.
    public func prunable(before cutoff: Date) -> [String] {
        let longestQueueTimeout = Double(Job.Limits.queueTimeoutRange.upperBound)
        return records.values.filter { record in
            guard record.phase == .finished, record.unpublished.isEmpty else { return false }
            let end = record.finishedAt ?? lastChange(of: record.runId)
            let deadline = record.dispatch?.queueDeadline ?? end.addingTimeInterval(longestQueueTimeout)
            return end < cutoff && deadline < cutoff
        }.map(\.runId).sorted()
    }

    /// When a record's file last changed (the distant future when it cannot be read, so it is kept).
    private nonisolated func lastChange(of runId: String) -> Date {
        let path = journalDirectory.appendingPathComponent("\(runId).json").path
        return ((try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date)
            ?? .distantFuture
    }

    /// Deletes a run's record. Used only for a run ``prunable(before:)`` returned, once its
    /// directory is gone; a crash before the deletion reaches the disk brings the record back,
    /// which does no harm (it is deleted again at the next pass).
    /// - Throws: ``OrchestratorError`` (`fileSystem`) when the record's file cannot be removed.
    public func forget(_ runId: String) throws {
        let path = journalDirectory.appendingPathComponent("\(runId).json").path
        guard unlink(path) == 0 || errno == ENOENT else { throw AgentLogFiles.fileError("could not remove \(path)") }
        records[runId] = nil
    }

    /// Drops published events from a record.
    ///
    /// Only a finished record is written at once. For a run that is still open the change stays in
    /// memory and reaches the disk with the record's next change (its launch or its end, which is
    /// always written): until then a crash leaves the events listed as unpublished, and the
    /// restarted orchestrator publishes them again, which consumers deduplicate by event id. So
    /// nothing the contract needs is lost, and the path from dispatch to `started` saves two
    /// journal writes (four fsyncs), one after `accepted` and one after `started`.
    public func markPublished(runId: String, upTo sequence: Int) throws {
        guard var record = records[runId] else { return }
        let before = record.unpublished.count
        record.unpublished.removeAll { $0.sequence <= sequence }
        guard record.unpublished.count != before else { return }
        if record.phase == .finished {
            try save(record)
        } else {
            records[runId] = record
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
