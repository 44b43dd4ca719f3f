import AgentJobsCore
import AgentJobsSQLite

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
        let outcomes = try await write { db in
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
            // Retries and webhook deliveries of the runs that ended, with their ends.
            var subscriptions = WebhookSubscriptions()
            for (event, outcome) in zip(events, outcomes) {
                guard case .applied(let run) = outcome, run.status.isTerminal else { continue }
                try Self.runEnded(
                    run, retryable: event.endIsRetryable(for: run), subscriptions: &subscriptions, now: now, db)
            }
            return outcomes
        }
        if outcomes.contains(where: { if case .stopRequested = $0 { true } else { false } }) { outboxAppended() }
        return outcomes
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
                let run = try Self.run(row, from: 1)
                runs[run.id] = run
                sequences[run.id] = row.int64(at: 0)
            }
            start += runsByIdChunk
        }
        return (runs, sequences)
    }

    /// Applies the event's outcome (``RunLifecycleEvent/outcome(on:)``) to the batch's runs, and
    /// queues the cancel a `stopRequested` asks for.
    private static func apply(
        _ event: RunLifecycleEvent, to runs: inout [String: Run], now: Date, _ db: SQLiteConnection
    ) throws -> RunEventOutcome {
        let outcome = event.outcome(on: runs[event.runId])
        switch outcome {
        case .applied(let run): runs[run.id] = run
        case .stopRequested(let run): try enqueueCancel(for: run, now: now, db)
        case .ignored, .unknownRun, .wrongHost: break
        }
        return outcome
    }

    /// Queues a `RunCancel` of `run` for its host, inside the caller's transaction.
    static func enqueueCancel(for run: Run, now: Date, _ db: SQLiteConnection) throws {
        try appendOutbox(.cancel(run, requestedAt: now), now: now, db)
    }

    public func recordHeartbeats(_ heartbeats: [ReceivedHeartbeat]) async throws -> [String: [String]] {
        let hosts = ReceivedHeartbeat.latestPerHost(heartbeats)
        guard !hosts.isEmpty else { return [:] }
        let stopped = try await write { db in
            var stopped: [String: [String]] = [:]
            for received in hosts {
                let heartbeat = received.heartbeat
                let running = received.runningRunIds
                try db.execute(
                    """
                    UPDATE hosts SET last_seen_at = ?, version = ?, heartbeat_partition = ?, clock_skew_ms = ?,
                        max_concurrent_runs = ?, running_runs = ?, lost_at = NULL
                    WHERE id = ?
                    """,
                    [
                        .date(received.receivedAt), .text(heartbeat.version), .integer(Int64(received.partition)),
                        .integer(received.clockSkewMilliseconds), heartbeat.maxConcurrentRuns.map { .int($0) } ?? .null,
                        .int(running.count), .text(heartbeat.hostId),
                    ])
                for runId in running {
                    guard
                        let run = try db.query(Self.runSelect + " WHERE id = ?", [.text(runId)]).first.map({
                            try Self.run($0, from: 1)
                        }),
                        run.hostId == heartbeat.hostId, run.status.isTerminal
                    else { continue }
                    try Self.enqueueCancel(for: run, now: received.receivedAt, db)
                    stopped[heartbeat.hostId, default: []].append(run.id)
                }
            }
            return stopped
        }
        if !stopped.isEmpty { outboxAppended() }
        return stopped
    }

    public func recordTrackingProbe(
        partition: Int32, trackerId: String, sentAt: Date, readAt: Date, maxDelay: Duration
    ) async throws -> HostTrackingWatermark {
        try await write { db in
            let current = try db.query(
                "SELECT partition, since, read_through, tracker_id FROM host_tracking WHERE partition = ?",
                [.integer(Int64(partition))]
            ).first.map(Self.watermark)
            let next = HostTrackingWatermark.advanced(
                current, partition: partition, trackerId: trackerId, probeSentAt: sentAt, readAt: readAt,
                maxDelay: maxDelay)
            try db.query(
                """
                INSERT INTO host_tracking (partition, since, read_through, tracker_id) VALUES (?, ?, ?, ?)
                ON CONFLICT (partition) DO UPDATE SET since = excluded.since, read_through = excluded.read_through,
                    tracker_id = excluded.tracker_id
                """,
                [.integer(Int64(partition)), .date(next.since), .date(next.readThrough), .text(next.trackerId)])
            return next
        }
    }

    private static func watermark(_ row: SQLiteRow) throws -> HostTrackingWatermark {
        guard let partition = row.int("partition"), let since = row.date("since"),
            let readThrough = row.date("read_through"), let trackerId = row.string("tracker_id")
        else {
            throw StoreError(
                .corrupt, "host_tracking: a row with a missing partition, since, read_through or tracker_id")
        }
        return HostTrackingWatermark(
            partition: Int32(partition), since: since, readThrough: readThrough, trackerId: trackerId)
    }

    public func hostTrackingWatermarks() async throws -> [Int32: HostTrackingWatermark] {
        try await read { db in
            var watermarks: [Int32: HostTrackingWatermark] = [:]
            for row in try db.query("SELECT partition, since, read_through, tracker_id FROM host_tracking") {
                let watermark = try Self.watermark(row)
                watermarks[watermark.partition] = watermark
            }
            return watermarks
        }
    }

    public func hostsNotHeard(since cutoff: Date) async throws -> [Host] {
        try await read { db in
            try db.query(
                "SELECT * FROM hosts WHERE COALESCE(last_seen_at, registered_at) < ? ORDER BY id", [.date(cutoff)]
            ).map(Self.host)
        }
    }

    public func hostCount() async throws -> Int {
        try await read { db in
            try db.query("SELECT count(*) AS n FROM hosts WHERE revoked_at IS NULL").first?.int("n") ?? 0
        }
    }

    public func closeRunsOfOfflineHosts(_ offline: [String: Date], lost: Set<String>, now: Date) async throws
        -> ExpiredRuns
    {
        // Host tracking asks every 2 s; most of the time there is nothing to close, and the single
        // writer should not be taken for that.
        if offline.isEmpty {
            let canceling = try await read { db in
                try db.query(
                    "SELECT 1 FROM runs WHERE status = 'queued' AND cancel_requested_at IS NOT NULL LIMIT 1"
                ).isEmpty == false
            }
            if !canceling { return ExpiredRuns() }
        }
        return try await write { db in
            var expired = ExpiredRuns()
            var subscriptions = WebhookSubscriptions()
            func close(_ original: Run, _ event: RunEvent) throws {
                var run = original
                guard run.apply(event) else { return }
                try Self.store(run, db)
                try Self.runEnded(
                    run, retryable: original.endByControlPlaneIsRetryable, subscriptions: &subscriptions, now: now,
                    db)
                switch run.status {
                case .failed: expired.lost.append(run)
                case .timedOut: expired.timedOut.append(run)
                case .canceled: expired.canceled.append(run)
                default: break
                }
            }
            for (hostId, silentSince) in offline.sorted(by: { $0.key < $1.key }) {
                let active = try db.query(
                    Self.runSelect + " WHERE host_id = ? AND status IN ('queued', 'running') ORDER BY seq",
                    [.text(hostId)]
                ).map { try Self.run($0, from: 1) }
                for run in active {
                    if let event = run.outcomeWhenHostOffline(
                        silentSince: silentSince, hostLost: lost.contains(hostId), now: now)
                    {
                        try close(run, event)
                    }
                }
            }
            let canceling = try db.query(
                Self.runSelect + " WHERE status = 'queued' AND cancel_requested_at IS NOT NULL ORDER BY seq"
            ).map { try Self.run($0, from: 1) }
            for run in canceling {
                if let event = run.outcomeOfCancelPastQueueDeadline(now: now) { try close(run, event) }
            }
            try Self.hostsLost(lost, subscriptions: &subscriptions, now: now, db)
            return expired
        }
    }

    public func trackingProbeSecret() async throws -> String {
        try await write { db in
            try db.query(
                "INSERT INTO control_plane_secrets (name, value) VALUES ('tracking-probe', ?) ON CONFLICT (name) DO NOTHING",
                [.text(Secret.generate(prefix: "ajp").value)])
            guard
                let value = try db.query("SELECT value FROM control_plane_secrets WHERE name = 'tracking-probe'").first?
                    .string("value")
            else { throw StoreError(.corrupt, "control_plane_secrets: the tracking-probe secret is missing") }
            return value
        }
    }

    /// Writes the next attempt of `run`, which has just ended, when its retry policy asks for one
    /// (``Run/nextAttempt(retryable:now:)``), inside the caller's transaction: held until its delay
    /// has passed (``releaseHeldRuns(now:limit:)`` writes its dispatch then). Nothing when the job
    /// is gone, or (it cannot be, as the ended run was the job's active run) has another active run.
    @discardableResult
    static func writeRetry(of run: Run, retryable: Bool, now: Date, _ db: SQLiteConnection) throws -> Run? {
        guard let next = run.nextAttempt(retryable: retryable, now: now),
            try !db.query("SELECT 1 FROM jobs WHERE id = ?", [.text(run.jobId)]).isEmpty,
            try activeRunId(jobId: run.jobId, db) == nil
        else { return nil }
        do {
            try insert(next, parametersText: nil, db)
        } catch let error as SQLiteError where error.isUniqueViolation {
            // No unique index may fail the transaction that records the end (on SQLite that would
            // stall every status update); PostgreSQL's insert skips such a conflict the same way.
            return nil
        }
        return next
    }

    public func releaseHeldRuns(now: Date, limit: Int) async throws -> [Run] {
        // Most passes find nothing: a read first, so the single writer is not taken for that.
        let due = try await read { db in
            try !db.query(
                "SELECT 1 FROM runs WHERE held_until IS NOT NULL AND held_until <= ? AND status = 'queued' LIMIT 1",
                [.date(now)]
            ).isEmpty
        }
        guard due else { return [] }
        let released = try await write { db -> [Run] in
            let held = try db.query(
                Self.runSelect
                    + " WHERE held_until IS NOT NULL AND held_until <= ? AND status = 'queued' ORDER BY held_until LIMIT ?",
                [.date(now), .int(limit)]
            ).map { try Self.run($0, from: 1) }
            return try held.map { run in
                var run = run
                run.heldUntil = nil
                try db.query("UPDATE runs SET held_until = NULL WHERE id = ?", [.text(run.id)])
                try Self.appendOutbox(.dispatch(run), now: now, db)
                return run
            }
        }
        if !released.isEmpty { outboxAppended() }
        return released
    }

    private static func store(_ run: Run, _ db: SQLiteConnection) throws {
        try db.query(
            "UPDATE runs SET status = ?, finished_at = ?, error_summary = ?, held_until = NULL WHERE id = ?",
            [
                .text(run.status.rawValue), .optionalDate(run.finishedAt), .optionalText(run.errorSummary),
                .text(run.id),
            ])
    }
}

extension SQLiteStore {
    public func replaceHostCredential(hostId: String, credential: Secret, by actor: RunRequester?, now: Date)
        async throws
    {
        try await write { db in
            try db.query(
                "UPDATE hosts SET credential_hash = ?, revoked_at = NULL WHERE id = ?",
                [.text(credential.hash), .text(hostId)])
            guard db.changes == 1 else { throw StoreError(.notFound, "no host with id \(hostId)") }
            let name = try db.query("SELECT name FROM hosts WHERE id = ?", [.text(hostId)]).first?.string("name")
            try Self.appendAudit(
                AuditEntry(
                    at: now, action: .hostCredentialReplaced, actor: actor, targetId: hostId, targetName: name), db)
        }
    }

    public func revokeHost(id: String, by actor: RunRequester?, now: Date) async throws -> Host {
        try await write { db in
            let wasRevoked =
                try db.query("SELECT revoked_at FROM hosts WHERE id = ?", [.text(id)]).first?.date(
                    "revoked_at") != nil
            try db.query(
                """
                UPDATE hosts SET revoked_at = COALESCE(revoked_at, ?),
                    credential_hash = CASE WHEN revoked_at IS NULL THEN ? ELSE credential_hash END
                WHERE id = ?
                """,
                [
                    .date(now), .text(Host.revokedCredentialPrefix + id + ":" + Secret.generate(prefix: "r").value),
                    .text(id),
                ])
            guard let row = try db.query("SELECT * FROM hosts WHERE id = ?", [.text(id)]).first else {
                throw StoreError(.notFound, "no host with id \(id)")
            }
            let host = try Self.host(row)
            if !wasRevoked {
                try Self.appendAudit(
                    AuditEntry(at: now, action: .hostRevoked, actor: actor, targetId: id, targetName: host.name), db)
            }
            return host
        }
    }
}
