import AgentJobsCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension SQLiteStore {
    public func hostCredentialHash(hostId: String) async throws -> String? {
        try await read { db in
            try db.query("SELECT credential_hash FROM hosts WHERE id = ?", [.text(hostId)]).first?.string(
                "credential_hash")
        }
    }

    public func applyRunEvents(_ events: [RunLifecycleEvent], now: Date) async throws -> [RunEventOutcome] {
        try await write { db in
            // Read every run the batch touches up front (a few queries instead of one per event),
            // apply the events to those values in order, then write each changed run once, found by
            // its row number rather than through the id index.
            var (runs, sequences) = try Self.runs(ids: Set(events.map(\.runId)), db)
            var changed: [String] = []
            let outcomes = try events.map { event in
                let outcome = try Self.apply(event, to: &runs, now: now, db)
                if case .applied(let run) = outcome { changed.append(run.id) }
                return outcome
            }
            var written: Set<String> = []
            for id in changed.reversed() where written.insert(id).inserted {
                guard let run = runs[id], let sequence = sequences[id] else { continue }
                try db.execute(
                    """
                    UPDATE runs SET status = ?, started_at = ?, finished_at = ?, exit_code = ?, error_summary = ?
                    WHERE seq = ?
                    """,
                    [
                        .text(run.status.rawValue), .optionalDate(run.startedAt), .optionalDate(run.finishedAt),
                        run.exitCode.map { .int($0) } ?? .null, .optionalText(run.errorSummary), .integer(sequence),
                    ])
            }
            return outcomes
        }
    }

    /// Reads the runs of a batch: ids in chunks of this many, the last chunk padded with a repeated id
    /// so that one prepared statement serves every chunk.
    private static let runsByIdChunk = 100
    private static let runsByIdSQL =
        runSelect + " WHERE id IN (" + Array(repeating: "?", count: runsByIdChunk).joined(separator: ",") + ")"

    /// The runs with these ids, and their row numbers (`seq`).
    private static func runs(ids: Set<String>, _ db: SQLiteConnection) throws -> (
        runs: [String: Run], sequences: [String: Int64]
    ) {
        var runs: [String: Run] = [:]
        var sequences: [String: Int64] = [:]
        runs.reserveCapacity(ids.count)
        sequences.reserveCapacity(ids.count)
        let ordered = Array(ids)
        var start = 0
        while start < ordered.count {
            var chunk = ordered[start..<min(start + runsByIdChunk, ordered.count)].map(SQLiteValue.text)
            while chunk.count < runsByIdChunk { chunk.append(chunk[chunk.count - 1]) }
            try db.forEachRow(runsByIdSQL, chunk) { row in
                let run = Self.run(row, from: 1)
                runs[run.id] = run
                sequences[run.id] = row.int64(at: 0)
            }
            start += runsByIdChunk
        }
        return (runs, sequences)
    }

    private static func apply(
        _ event: RunLifecycleEvent, to runs: inout [String: Run], now: Date, _ db: SQLiteConnection
    ) throws -> RunEventOutcome {
        guard var run = runs[event.runId] else { return .unknownRun }
        guard run.hostId == event.hostId else { return .wrongHost(expected: run.hostId) }
        guard event.dispatchEpoch == run.dispatchEpoch else {
            return .ignored(
                run, reason: "event for dispatch epoch \(event.dispatchEpoch); the run is at \(run.dispatchEpoch)")
        }
        guard let change = event.runEvent else {
            return .ignored(run, reason: "\(event.type.rawValue) changes no status")
        }
        if run.status.isTerminal, run.startedAt == nil, event.type == .started {
            // The control plane closed the run before any start was recorded (canceled while queued,
            // or given up on a silent host), yet the host started it: tell it to stop. A `started`
            // for a run whose start was recorded is only a replay.
            try enqueueCancel(for: run, now: now, db)
            return .stopRequested(run)
        }
        guard run.apply(change) else {
            return .ignored(run, reason: "\(event.type.rawValue) does not apply to a \(run.status.rawValue) run")
        }
        runs[run.id] = run
        return .applied(run)
    }

    /// Queues a `RunCancel` of `run` for its host, inside the caller's transaction.
    static func enqueueCancel(for run: Run, now: Date, _ db: SQLiteConnection) throws {
        let cancel = RunCancel(runId: run.id, hostId: run.hostId, dispatchEpoch: run.dispatchEpoch, requestedAt: now)
        try appendOutbox(
            key: run.hostId, type: RunCancel.type, payload: try Codec.encode(cancel), runId: run.id, now: now, db)
    }

    public func recordHeartbeat(_ heartbeat: HostHeartbeat, now: Date) async throws -> [String] {
        try await write { db in
            try db.query(
                """
                UPDATE hosts SET last_seen_at = MAX(COALESCE(last_seen_at, 0), ?), version = ? WHERE id = ?
                """,
                [.date(heartbeat.sentAt), .text(heartbeat.version), .text(heartbeat.hostId)])
            var stopped: [String] = []
            for active in heartbeat.activeRuns {
                guard
                    let run = try db.query(Self.runSelect + " WHERE id = ?", [.text(active.runId)]).first.map({
                        Self.run($0, from: 1)
                    }),
                    run.hostId == heartbeat.hostId, run.status.isTerminal, active.status == .running
                else { continue }
                try Self.enqueueCancel(for: run, now: now, db)
                stopped.append(run.id)
            }
            return stopped
        }
    }

    public func expireRunsOfSilentHosts(silentSince: Date, now: Date) async throws -> ExpiredRuns {
        try await write { db in
            let silent = "SELECT id FROM hosts WHERE COALESCE(last_seen_at, registered_at) < ?"
            let running = try db.query(
                Self.runSelect + " WHERE status = 'running' AND host_id IN (\(silent))", [.date(silentSince)]
            ).map { Self.run($0, from: 1) }
            let queued = try db.query(
                Self.runSelect + " WHERE status = 'queued' AND host_id IN (\(silent))", [.date(silentSince)]
            ).map { Self.run($0, from: 1) }.filter { $0.queueDeadline < now }
            var expired = ExpiredRuns(lost: [], timedOut: [])
            for var run in running {
                run.apply(
                    .failed(
                        at: now, exitCode: nil,
                        errorSummary:
                            "host lost: no heartbeat from host \(run.hostId) since \(ISO8601.format(silentSince))"))
                try Self.store(run, db)
                expired.lost.append(run)
            }
            for var run in queued {
                run.apply(
                    .timedOut(
                        at: now,
                        errorSummary:
                            "queue deadline passed while host \(run.hostId) was offline; the agent was never launched"))
                try Self.store(run, db)
                expired.timedOut.append(run)
            }
            return expired
        }
    }

    private static func store(_ run: Run, _ db: SQLiteConnection) throws {
        try db.query(
            "UPDATE runs SET status = ?, finished_at = ?, error_summary = ? WHERE id = ?",
            [.text(run.status.rawValue), .optionalDate(run.finishedAt), .optionalText(run.errorSummary), .text(run.id)])
    }
}

extension SQLiteStore {
    /// Gives a host a new credential (the embedded shape's local host, whose credential the data
    /// dir lost, e.g. one created before the orchestrator kept it).
    /// - Throws: ``StoreError/Code/notFound`` for an unknown host.
    public func replaceHostCredential(hostId: String, credential: Secret) async throws {
        try await write { db in
            try db.query("UPDATE hosts SET credential_hash = ? WHERE id = ?", [.text(credential.hash), .text(hostId)])
            guard db.changes == 1 else { throw StoreError(.notFound, "no host with id \(hostId)") }
        }
    }
}
