import AgentJobsCore
import AgentJobsLifecycle
import AgentJobsStore
import AgentJobsTelemetry
import CoreMetrics
import Logging
import ServiceLifecycle

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Host liveness: folds heartbeats (`agentjobs.host-events`) into each host's last-seen time and
/// version, tells a host to stop runs it reports that the control plane already closed, and — the
/// backstop for hosts that went silent — closes their runs ("host lost", queue deadline, a cancel no
/// host accepted).
///
/// "Host lost" is decided on evidence about the host, never on tracking's own gaps: every replica
/// publishes a signed probe into each partition of the topic every ``Configuration/probeInterval``
/// and records when it reads one back (``HostTrackingWatermark``). A host is declared offline only
/// when its partition was read without a break for longer than the grace beyond its last heartbeat,
/// so after a restart, a rebalance, or a broker or database outage every host gets a fresh grace.
public struct HostTracker<Consumer: MessageConsumer>: Service {
    /// Settings of host tracking.
    public struct Configuration: Sendable {
        /// A host silent for longer than this (while tracking reads its heartbeats) is offline: its
        /// queued runs with a cancel request are canceled, and those past their deadline time out.
        public var offlineGrace: Duration = .seconds(30)
        /// An offline host's running runs fail ("host lost") once it has been silent this long (at
        /// least ``offlineGrace``): an orchestrator restart or a short partition is ridden out.
        public var runsLostAfter: Duration = .seconds(300)
        /// How often silent hosts are looked for.
        public var sweepInterval: Duration = .seconds(2)
        /// How often a probe is published into every partition of `agentjobs.host-events`.
        public var probeInterval: Duration = .seconds(2)
        /// A probe read back later than this, or a gap longer than this between probes, means
        /// tracking was behind: hosts on that partition get a fresh grace.
        public var probeMaxDelay: Duration = .seconds(10)
        /// The partition count of `agentjobs.host-events`.
        public var hostEventsPartitions: Int32 = 1
        /// Names this replica in its probes (logs only).
        public var trackerId = "host-tracker"
        /// The partitioner producers use for `agentjobs.host-events` (murmur2 on both transports).
        public var partitioner: PartitionForKey = Murmur2Partitioner.partitionForKey
        public init() {}
    }

    let store: any RunEventStore
    let consumer: Consumer
    let producer: any MessageProducer
    let configuration: Configuration
    let logger: Logger
    let hostKeys: HostKeys
    let clock: @Sendable () -> Date

    /// - Parameters:
    ///   - consumer: A group consumer of `agentjobs.host-events`.
    ///   - producer: Publishes probes, run records of given-up runs and dead letters.
    public init(
        store: any RunEventStore, consumer: Consumer, producer: any MessageProducer,
        configuration: Configuration = .init(),
        logger: Logger,
        clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.store = store
        self.consumer = consumer
        self.producer = producer
        self.configuration = configuration
        self.logger = logger
        self.hostKeys = HostKeys(store: store)
        self.clock = clock
    }

    public func run() async throws {
        logger.info(
            "host tracking started",
            metadata: [
                "offline_grace": "\(configuration.offlineGrace)", "partitions": "\(configuration.hostEventsPartitions)",
            ])
        // The key probes are signed with, from the store (retried until it answers).
        let probeKey = await retryUntilShutdown(every: .seconds(1)) { error in
            logger.error("cannot read the probe key from the store; retrying", metadata: ["error": "\(error)"])
        } _: {
            HostEventKey(credentialHash: try await store.trackingProbeSecret())
        }
        if let probeKey {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sweepLoop() }
                group.addTask { try await probeLoop(probeKey) }
                while let batch = try await consumer.nextBatch(maxCount: Self.batchSize) {
                    // Stopping: the batch is not committed, and is read again after the next start.
                    guard await handle(batch, probeKey: probeKey) else { break }
                }
                group.cancelAll()
            }
        }
        // Return only once asked to (see StatusAggregator).
        try? await gracefulShutdown()
        logger.info("host tracking stopped")
    }

    /// Host events taken from the consumer at once, at most.
    static var batchSize: Int { 256 }

    /// Handles the messages in order, then publishes their dead letters together and commits them.
    ///
    /// Heartbeats are checked one by one and recorded together, in one transaction for all those
    /// read between two probes (a fleet of 20,000 hosts sends 4,000 a second: one transaction each
    /// was the tracker's bound). Those read before a probe are recorded before the probe moves its
    /// partition's watermark, so the watermark never claims a read that the hosts' last-seen times
    /// do not show yet.
    ///
    /// Dead letters go out as one batch (in flight together) rather than one awaited send per bad
    /// message: a flood of messages tracking cannot verify (another control plane's probes on the
    /// same topic, forged heartbeats) must not slow the reading of the probes and heartbeats behind
    /// them, or every host's evidence would start again and no lost host would ever be found.
    ///
    /// Each step is retried alone while it fails (the store is down), and keeps the receive times
    /// it took the first time: a retry never records a heartbeat with a later receive time, which
    /// would keep a dead host online. Then the dead letters not yet stored are sent and the batch
    /// committed, retried as one step: nothing is committed before its dead letter is stored.
    /// - Returns: false when stopping before the batch was committed.
    func handle(_ batch: [IncomingMessage], probeKey: HostEventKey) async -> Bool {
        var unsent: [(message: OutgoingMessage, reason: String)] = []
        var heartbeats: [ReceivedHeartbeat] = []
        for message in batch {
            let examined = await retryUntilShutdown(every: .seconds(1)) { error in
                logger.error("host event handling failed; retrying", metadata: ["error": "\(error)"])
            } _: {
                try await examine(message, probeKey: probeKey)
            }
            switch examined {
            case nil: return false
            case .heartbeat(let received): heartbeats.append(received)
            case .deadLetter(let letter, let reason): unsent.append((letter, reason))
            case .otherReplicasProbe: break
            case .probe(let probe, let readAt):
                guard await record(heartbeats) else { return false }
                heartbeats.removeAll()
                let recorded: Void? = await retryUntilShutdown(every: .seconds(1)) { error in
                    logger.error("host tracking probe not recorded; retrying", metadata: ["error": "\(error)"])
                } _: {
                    try await record(probe, readAt: readAt)
                }
                guard recorded != nil else { return false }
            }
        }
        guard await record(heartbeats) else { return false }
        let committed: Void? = await retryUntilShutdown(every: .seconds(1)) { error in
            logger.error(
                "host events not committed (dead letters or the commit failed); retrying",
                metadata: ["error": "\(error)"])
        } _: {
            if !unsent.isEmpty {
                let results = await producer.sendBatch(unsent.map(\.message))
                var failed: [(message: OutgoingMessage, reason: String)] = []
                var firstError: (any Error)?
                for (letter, result) in zip(unsent, results) {
                    switch result {
                    case .success: TransportMetrics.deadLettered(from: Topic.hostEvents, reason: letter.reason)
                    case .failure(let error):
                        failed.append(letter)
                        firstError = firstError ?? error
                    }
                }
                unsent = failed
                if let firstError { throw firstError }
            }
            try await consumer.commit(batch.map(\.position))
        }
        return committed != nil
    }

    /// A host event read and checked: what recording it takes.
    private enum Examined {
        case heartbeat(ReceivedHeartbeat)
        case probe(HostTrackingProbe, readAt: Date)
        /// Another replica's probe: read, and nothing to record.
        case otherReplicasProbe
        case deadLetter(OutgoingMessage, reason: String)
    }

    /// Decodes and verifies one host event.
    /// - Throws: When the store fails (the message is examined again).
    private func examine(_ message: IncomingMessage, probeKey: HostEventKey) async throws -> Examined {
        do {
            let wire = try WireMessage(message)
            if wire.typeAndVersion?.type == HostTrackingProbe.type {
                try Self.verify(wire, key: probeKey)
                let probe = try wire.decode(HostTrackingProbe.self)
                guard probe.partition == message.partition else {
                    throw WireError(
                        .undecodableBody,
                        "probe for partition \(probe.partition) read from partition \(message.partition)")
                }
                // Only a replica's own probes count: their send and read times are on one clock (a
                // replica whose clock runs ahead can then never claim evidence for heartbeats another
                // one received).
                guard probe.trackerId == configuration.trackerId else { return .otherReplicasProbe }
                return .probe(probe, readAt: clock())
            }
            let heartbeat = try await verifiedHeartbeat(wire)
            return .heartbeat(ReceivedHeartbeat(heartbeat, partition: message.partition, receivedAt: clock()))
        } catch let error as WireError {
            logger.warning(
                "dead-lettering a host event", metadata: ["reason": "\(error)", "offset": "\(message.position)"])
            return .deadLetter(.deadLetter(for: message, reason: error.description), reason: error.description)
        }
    }

    private func verifiedHeartbeat(_ wire: WireMessage) async throws -> HostHeartbeat {
        let heartbeat = try wire.decode(HostHeartbeat.self)
        guard heartbeat.version.utf8.count <= 64, heartbeat.driver.utf8.count <= 32,
            heartbeat.activeRuns.count <= HostHeartbeat.maxActiveRuns,
            heartbeat.activeRuns.allSatisfy({ $0.runId.utf8.count <= 128 })
        else {
            throw WireError(.undecodableBody, "heartbeat with a field longer than this build accepts")
        }
        guard (heartbeat.maxConcurrentRuns ?? 1) >= 1 else {
            throw WireError(.undecodableBody, "heartbeat with a concurrency limit below 1")
        }
        guard !heartbeat.hostId.hasControlCharacter, !heartbeat.version.hasControlCharacter,
            !heartbeat.driver.hasControlCharacter,
            !heartbeat.activeRuns.contains(where: { $0.runId.hasControlCharacter })
        else {
            throw WireError(.undecodableBody, "heartbeat with a control character in an id, its version or its driver")
        }
        guard wire.envelope.key == heartbeat.hostId,
            wire.envelope.source == WireEnvelope.hostSource(heartbeat.hostId)
        else {
            throw WireError(.undecodableBody, "heartbeat body, key and source disagree")
        }
        try await hostKeys.verify(wire, hostId: heartbeat.hostId)
        return heartbeat
    }

    /// Records heartbeats in one transaction, retried while the store fails.
    /// - Returns: false when stopping before they were recorded.
    private func record(_ heartbeats: [ReceivedHeartbeat]) async -> Bool {
        guard !heartbeats.isEmpty else { return true }
        let stopped = await retryUntilShutdown(every: .seconds(1)) { error in
            logger.error("heartbeats not recorded; retrying", metadata: ["error": "\(error)"])
        } _: {
            try await store.recordHeartbeats(heartbeats)
        }
        guard let stopped else { return false }
        Counter(label: "agentjobs_heartbeats_received_total").increment(by: heartbeats.count)
        for (hostId, runIds) in stopped.sorted(by: { $0.key < $1.key }) {
            logger.warning(
                "host reports runs that are already closed; asked it to stop them",
                metadata: ["host_id": "\(hostId)", "run_ids": "\(runIds.joined(separator: ","))"])
        }
        return true
    }

    private func record(_ probe: HostTrackingProbe, readAt: Date) async throws {
        let watermark = try await store.recordTrackingProbe(
            partition: probe.partition, trackerId: probe.trackerId, sentAt: probe.sentAt, readAt: readAt,
            maxDelay: configuration.probeMaxDelay)
        if watermark.since == readAt {
            logger.notice(
                "host tracking (re)started on a partition; its hosts get a fresh grace before any is declared lost",
                metadata: [
                    "partition": "\(probe.partition)",
                    "probe_delay_seconds": "\(readAt.timeIntervalSince(probe.sentAt))",
                ])
        }
    }

    /// The typed-throws call kept out of the async function (see ``HostKeys``).
    @inline(never)
    private static func verify(_ wire: WireMessage, key: HostEventKey) throws {
        guard wire.envelope.source == HostTrackingProbe.source else {
            throw WireError(.badSignature, "probe from \(wire.envelope.source), not from host tracking")
        }
        try key.verify(wire)
    }

    private func probeLoop(_ key: HostEventKey) async throws {
        let keys = HostTrackingProbe.keys(
            partitionCount: configuration.hostEventsPartitions, partitioner: configuration.partitioner)
        var failing = false
        while !Task.isCancelled {
            let now = clock()
            let messages = try keys.sorted { $0.key < $1.key }.map { partition, partitionKey in
                try HostTrackingProbe(trackerId: configuration.trackerId, partition: partition, sentAt: now)
                    .message(key: partitionKey, signedWith: key)
            }
            // A stop does not wait for probes the broker cannot take (delivery times out after 30 s).
            guard let results = await abandoningOnCancel({ [producer] in await producer.sendBatch(messages) }) else {
                return
            }
            let failures = results.compactMap { result -> (any Error)? in
                if case .failure(let error) = result { return error }
                return nil
            }
            if let error = failures.first, !failing {
                logger.warning(
                    "host tracking probes not published; no host is declared lost until tracking has caught up",
                    metadata: ["error": "\(error)"])
            }
            failing = !failures.isEmpty
            try await Task.sleep(for: configuration.probeInterval)
        }
    }

    private func sweepLoop() async throws {
        while !Task.isCancelled {
            do {
                try await sweep(now: clock())
            } catch {
                logger.error("silent-host sweep failed; retrying", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: configuration.sweepInterval)
        }
    }

    /// `agentjobs_hosts{status}`: each replica sets the same figures, so aggregate them with `max`.
    static func hosts(_ status: String) -> Gauge {
        Gauge(label: "agentjobs_hosts", dimensions: [("status", status)])
    }

    /// Closes the runs of hosts that tracking shows silent for longer than the grace period, and of
    /// queued runs whose cancel outlived their queue deadline, publishes their records, then sets
    /// the hosts gauges.
    func sweep(now: Date) async throws {
        let grace = configuration.offlineGrace
        let silent = try await store.hostsNotHeard(since: now.addingTimeInterval(-grace.seconds))
        var offline: [String: Date] = [:]
        var lost: Set<String> = []
        let lostAfter = max(configuration.runsLostAfter, grace)
        if !silent.isEmpty {
            let watermarks = try await store.hostTrackingWatermarks()
            for host in silent {
                let partition =
                    host.heartbeatPartition
                    ?? configuration.partitioner(Array(host.id.utf8), configuration.hostEventsPartitions)
                if case .offline(let since) = host.liveness(now: now, grace: grace, watermark: watermarks[partition]) {
                    offline[host.id] = since
                    // Lost on the same evidence, for the longer time: tracking's own gaps never count.
                    if case .offline = host.liveness(now: now, grace: lostAfter, watermark: watermarks[partition]) {
                        lost.insert(host.id)
                    }
                }
            }
        }
        let expired = try await store.closeRunsOfOfflineHosts(offline, lost: lost, now: now)
        await publish(expired, now: now)
        // Last, and allowed to fail: the runs closed above are published whatever the count does.
        guard let registered = try? await store.hostCount() else { return }
        // Revoked hosts are among the silent ones but not counted as registered.
        let silentRegistered = silent.filter { $0.revokedAt == nil }
        let offlineRegistered = silentRegistered.filter { offline[$0.id] != nil }.count
        Self.hosts("online").record(max(0, registered - silentRegistered.count))
        Self.hosts("offline").record(offlineRegistered)
        Self.hosts("unknown").record(silentRegistered.count - offlineRegistered)
    }

    /// Counts, logs and publishes the records of the runs a sweep closed.
    private func publish(_ expired: ExpiredRuns, now: Date) async {
        let runs = expired.all
        for run in runs { RunMetrics.ended(run, appliedAt: now) }
        guard !runs.isEmpty else { return }
        for run in expired.lost {
            logger.warning(
                "host lost; run failed",
                metadata: ["run_id": "\(run.id)", "host_id": "\(run.hostId)", "job_id": "\(run.jobId)"])
        }
        for run in expired.timedOut {
            logger.warning(
                "queue deadline passed on an offline host; run timed out",
                metadata: ["run_id": "\(run.id)", "host_id": "\(run.hostId)", "job_id": "\(run.jobId)"])
        }
        for run in expired.canceled {
            logger.info(
                "canceled run that no host accepted is closed",
                metadata: ["run_id": "\(run.id)", "host_id": "\(run.hostId)", "job_id": "\(run.jobId)"])
        }
        let records = runs.map { RunStatusRecord(run: $0, revision: $0.statusRevision).message(at: now) }
        for result in await producer.sendBatch(records) {
            if case .failure(let error) = result {
                logger.warning("run record not published", metadata: ["error": "\(error)"])
            }
        }
    }
}
