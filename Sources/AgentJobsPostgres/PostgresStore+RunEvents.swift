import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Run events

extension PostgresStore {
    public func applyRunEvents(_ events: [RunLifecycleEvent], now: Date) async throws -> [RunEventOutcome] {
        guard !events.isEmpty else { return [] }
        let outcomes = try await write { db -> [RunEventOutcome] in
            // Lock every run the batch touches up front, in id order (aggregator replicas with
            // overlapping batches then wait for one another instead of deadlocking), apply the
            // events to those values in order, then write each changed run once.
            let locked = try await Self.lockRuns(ids: Set(events.map(\.runId)), db)
            var runs = locked.runs
            let sequences = locked.sequences
            var changed: [String] = []
            var outcomes: [RunEventOutcome] = []
            outcomes.reserveCapacity(events.count)
            for event in events {
                let outcome = event.outcome(on: runs[event.runId])
                switch outcome {
                case .applied(let run):
                    runs[run.id] = run
                    changed.append(run.id)
                case .stopRequested(let run):
                    try await Self.enqueueCancel(for: run, now: now, db)
                case .ignored, .unknownRun, .wrongHost:
                    break
                }
                outcomes.append(outcome)
            }
            var written: Set<String> = []
            var updates: [(run: Run, sequence: Int64)] = []
            for id in changed where written.insert(id).inserted {
                guard let run = runs[id], let sequence = sequences[id] else { continue }
                updates.append((run, sequence))
            }
            try await Self.storeEventChanges(updates, db)
            // Retries and webhook deliveries of the runs that ended, with their ends.
            var ended: [(run: Run, retryable: Bool)] = []
            for (event, outcome) in zip(events, outcomes) {
                guard case .applied(let run) = outcome, run.status.isTerminal else { continue }
                ended.append((run, event.endIsRetryable(for: run)))
            }
            try await Self.runsEnded(ended, now: now, db)
            return outcomes
        }
        if outcomes.contains(where: { if case .stopRequested = $0 { true } else { false } }) { outboxAppended() }
        return outcomes
    }

    /// The runs with these ids, locked (`FOR UPDATE`, taken in id order), and their `seq`.
    private static func lockRuns(ids: Set<String>, _ db: PostgresSession) async throws -> (
        runs: [String: Run], sequences: [String: Int64]
    ) {
        var runs: [String: Run] = [:]
        var sequences: [String: Int64] = [:]
        runs.reserveCapacity(ids.count)
        sequences.reserveCapacity(ids.count)
        let rows = try await db.query(
            "\(unescaped: runSelect) WHERE id = ANY(\(ids.sorted())) ORDER BY id FOR UPDATE")
        for row in rows {
            let stored = try StoredValues(row, table: "runs").identified()
            let run = try Self.run(stored)
            runs[run.id] = run
            sequences[run.id] = try stored.value("seq", Int64.self)
        }
        return (runs, sequences)
    }

    /// Rows per `UPDATE` in ``storeEventChanges(_:_:)`` (6 parameters each, of PostgreSQL's 65,535).
    private static let eventChangesChunk = 1000

    /// Writes what events changed in runs (status, start, end, exit code, error summary), one
    /// statement per ``eventChangesChunk`` runs, each found by its `seq`.
    private static func storeEventChanges(_ changes: [(run: Run, sequence: Int64)], _ db: PostgresSession)
        async throws
    {
        var start = 0
        while start < changes.count {
            let chunk = changes[start..<min(start + eventChangesChunk, changes.count)]
            var bindings = PostgresBindings(capacity: chunk.count * 6)
            var rows: [String] = []
            rows.reserveCapacity(chunk.count)
            for (run, sequence) in chunk {
                let first = bindings.count + 1
                bindings.append(sequence)
                bindings.append(run.status.rawValue)
                bindings.append(StoredTime.ms(run.startedAt))
                bindings.append(StoredTime.ms(run.finishedAt))
                bindings.append(run.exitCode.map { Int64($0) })
                bindings.append(run.errorSummary)
                // Casts: a NULL parameter has no type of its own.
                rows.append(
                    "($\(first)::bigint, $\(first + 1)::text, $\(first + 2)::bigint, $\(first + 3)::bigint, "
                        + "$\(first + 4)::bigint, $\(first + 5)::text)")
            }
            let sql = """
                UPDATE runs SET status = v.status, started_at = v.started_at, finished_at = v.finished_at,
                    exit_code = v.exit_code, error_summary = v.error_summary
                FROM (VALUES \(rows.joined(separator: ", ")))
                    AS v(seq, status, started_at, finished_at, exit_code, error_summary)
                WHERE runs.seq = v.seq
                """
            try await db.query(PostgresQuery(unsafeSQL: sql, binds: bindings))
            start += eventChangesChunk
        }
    }

    /// Hosts per `UPDATE` in ``recordHeartbeats(_:)`` (7 parameters each, of PostgreSQL's 65,535).
    private static let heartbeatChunk = 1000

    public func recordHeartbeats(_ heartbeats: [ReceivedHeartbeat]) async throws -> [String: [String]] {
        let hosts = ReceivedHeartbeat.latestPerHost(heartbeats)
        guard !hosts.isEmpty else { return [:] }
        let stopped = try await write { db -> [String: [String]] in
            var start = 0
            while start < hosts.count {
                let chunk = hosts[start..<min(start + Self.heartbeatChunk, hosts.count)]
                var bindings = PostgresBindings(capacity: chunk.count * 7)
                var rows: [String] = []
                rows.reserveCapacity(chunk.count)
                for received in chunk {
                    let first = bindings.count + 1
                    bindings.append(received.heartbeat.hostId)
                    bindings.append(StoredTime.ms(received.receivedAt))
                    bindings.append(received.heartbeat.version)
                    bindings.append(received.partition)
                    bindings.append(received.clockSkewMilliseconds)
                    bindings.append(received.heartbeat.maxConcurrentRuns.map { Int32(clamping: $0) })
                    bindings.append(Int32(clamping: received.runningRunIds.count))
                    // Casts: a NULL parameter has no type of its own.
                    rows.append(
                        "($\(first)::text, $\(first + 1)::bigint, $\(first + 2)::text, $\(first + 3)::int, "
                            + "$\(first + 4)::bigint, $\(first + 5)::int, $\(first + 6)::int)")
                }
                let sql = """
                    UPDATE hosts SET last_seen_at = v.seen, version = v.version, heartbeat_partition = v.partition,
                        clock_skew_ms = v.skew, max_concurrent_runs = v.limit_runs, running_runs = v.running,
                        lost_at = NULL
                    FROM (VALUES \(rows.joined(separator: ", ")))
                        AS v(id, seen, version, partition, skew, limit_runs, running)
                    WHERE hosts.id = v.id
                    """
                try await db.query(PostgresQuery(unsafeSQL: sql, binds: bindings))
                start += Self.heartbeatChunk
            }
            // Only runs a host reports running can be ones to stop: read those at once.
            let running = hosts.flatMap(\.runningRunIds)
            guard !running.isEmpty else { return [:] }
            var runs: [String: Run] = [:]
            for row in try await db.query("\(unescaped: Self.runSelect) WHERE id = ANY(\(running))") {
                let run = try Self.run(row)
                runs[run.id] = run
            }
            var stopped: [String: [String]] = [:]
            for received in hosts {
                for runId in received.runningRunIds {
                    guard let run = runs[runId], run.hostId == received.heartbeat.hostId, run.status.isTerminal
                    else { continue }
                    try await Self.enqueueCancel(for: run, now: received.receivedAt, db)
                    stopped[run.hostId, default: []].append(run.id)
                }
            }
            return stopped
        }
        if !stopped.isEmpty { outboxAppended() }
        return stopped
    }

    // MARK: Host tracking

    /// The first key of the transaction-level advisory locks that serialize the updates of one
    /// partition's watermark (the second is the partition): "ajth" in ASCII.
    private static let trackingLockClass: Int32 = 0x616A_7468

    public func recordTrackingProbe(
        partition: Int32, trackerId: String, sentAt: Date, readAt: Date, maxDelay: Duration
    ) async throws -> HostTrackingWatermark {
        try await write { db in
            // Replicas advancing the same partition's watermark take turns, as SQLite's single
            // writer makes them (a row lock cannot serialize the first write of a partition).
            try await db.query("SELECT pg_advisory_xact_lock(\(Self.trackingLockClass), \(partition))")
            let current = try await db.query(
                "SELECT partition, since, read_through, tracker_id FROM host_tracking WHERE partition = \(partition)"
            ).first.map { try Self.watermark($0) }
            let next = HostTrackingWatermark.advanced(
                current, partition: partition, trackerId: trackerId, probeSentAt: sentAt, readAt: readAt,
                maxDelay: maxDelay)
            try await db.query(
                """
                INSERT INTO host_tracking (partition, since, read_through, tracker_id)
                VALUES (\(partition), \(StoredTime.ms(next.since)), \(StoredTime.ms(next.readThrough)),
                        \(next.trackerId))
                ON CONFLICT (partition) DO UPDATE SET since = EXCLUDED.since, read_through = EXCLUDED.read_through,
                    tracker_id = EXCLUDED.tracker_id
                """)
            return next
        }
    }

    public func hostTrackingWatermarks() async throws -> [Int32: HostTrackingWatermark] {
        try await read { db in
            var watermarks: [Int32: HostTrackingWatermark] = [:]
            for row in try await db.query("SELECT partition, since, read_through, tracker_id FROM host_tracking") {
                let watermark = try Self.watermark(row)
                watermarks[watermark.partition] = watermark
            }
            return watermarks
        }
    }

    public func trackingProbeSecret() async throws -> String {
        let candidate = Secret.generate(prefix: "ajp").value
        return try await write { db in
            try await db.query(
                """
                INSERT INTO control_plane_secrets (name, value) VALUES ('tracking-probe', \(candidate))
                ON CONFLICT (name) DO NOTHING
                """)
            guard
                let row = try await db.query("SELECT value FROM control_plane_secrets WHERE name = 'tracking-probe'")
                    .first,
                let value = try StoredValues(row, table: "control_plane_secrets").identified(as: "tracking-probe")
                    .string("value")
            else { throw StoreError(.corrupt, "control_plane_secrets: the tracking-probe secret is missing") }
            return value
        }
    }

    // MARK: Offline hosts

    public func closeRunsOfOfflineHosts(_ offline: [String: Date], lost: Set<String>, now: Date) async throws
        -> ExpiredRuns
    {
        // Host tracking asks every 2 s; most of the time there is nothing to close, and no
        // transaction or lock should be taken for that.
        if offline.isEmpty {
            let canceling = try await read { db in
                try await db.query(
                    "SELECT 1 FROM runs WHERE status = 'queued' AND cancel_requested_at IS NOT NULL LIMIT 1"
                ).isEmpty == false
            }
            if !canceling { return ExpiredRuns() }
        }
        return try await write { db -> ExpiredRuns in
            // Every candidate locked at once, in id order (so that replicas and aggregators do not
            // deadlock), then decided in the SQLite store's order: offline hosts by id, each host's
            // active runs oldest first, then queued runs with a cancel request oldest first.
            let hostIds = offline.keys.sorted()
            let rows = try await db.query(
                """
                \(unescaped: Self.runSelect)
                WHERE (host_id = ANY(\(hostIds)) AND status IN ('queued', 'running'))
                    OR (status = 'queued' AND cancel_requested_at IS NOT NULL)
                ORDER BY id FOR UPDATE
                """)
            var candidates: [(sequence: Int64, run: Run)] = []
            for row in rows {
                let stored = try StoredValues(row, table: "runs").identified()
                candidates.append((try stored.value("seq", Int64.self), try Self.run(stored)))
            }
            candidates.sort { $0.sequence < $1.sequence }
            var current: [String: Run] = [:]
            for candidate in candidates { current[candidate.run.id] = candidate.run }

            var expired = ExpiredRuns()
            var ended: [(run: Run, retryable: Bool)] = []
            for hostId in hostIds {
                guard let silentSince = offline[hostId] else { continue }
                for candidate in candidates where candidate.run.hostId == hostId {
                    guard let run = current[candidate.run.id], run.status.isActive,
                        let event = run.outcomeWhenHostOffline(
                            silentSince: silentSince, hostLost: lost.contains(hostId), now: now)
                    else { continue }
                    if let closed = try await Self.closeRun(run, event, ended: &ended, now: now, db) {
                        current[closed.id] = closed
                        expired.record(closed)
                    }
                }
            }
            for candidate in candidates {
                guard let run = current[candidate.run.id], run.status == .queued, run.cancelRequestedAt != nil,
                    let event = run.outcomeOfCancelPastQueueDeadline(now: now)
                else { continue }
                if let closed = try await Self.closeRun(run, event, ended: &ended, now: now, db) {
                    current[closed.id] = closed
                    expired.record(closed)
                }
            }
            try await Self.runsEnded(ended, now: now, db)
            try await Self.hostsLost(lost, now: now, db)
            return expired
        }
    }

    /// Applies `event` to `run` and stores the result; adds it to `ended` for its webhook deliveries,
    /// and its retry only when it was a retry still held (``Run/endByControlPlaneIsRetryable``).
    /// - Returns: The run afterwards, or `nil` when the event changed nothing.
    private static func closeRun(
        _ original: Run, _ event: RunEvent, ended: inout [(run: Run, retryable: Bool)], now: Date,
        _ db: PostgresSession
    ) async throws -> Run? {
        var run = original
        guard run.apply(event) else { return nil }
        try await db.query(
            """
            UPDATE runs SET status = \(run.status.rawValue), finished_at = \(StoredTime.ms(run.finishedAt)),
                error_summary = \(run.errorSummary), held_until = NULL
            WHERE id = \(run.id)
            """)
        ended.append((run, original.endByControlPlaneIsRetryable))
        return run
    }
}

extension ExpiredRuns {
    /// Files a closed run under how it ended.
    fileprivate mutating func record(_ run: Run) {
        switch run.status {
        case .failed: lost.append(run)
        case .timedOut: timedOut.append(run)
        case .canceled: canceled.append(run)
        default: break
        }
    }
}
