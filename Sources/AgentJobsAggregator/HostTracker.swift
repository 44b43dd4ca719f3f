import AgentJobsCore
import AgentJobsStore
import Logging
import ServiceLifecycle

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Host liveness: folds heartbeats (`agentjobs.host-events`) into each host's last-seen time and
/// version, tells a host to stop runs it reports that the control plane already closed, and — the
/// backstop for hosts that went silent — fails their running runs ("host lost") and times out
/// their queued runs past the queue deadline.
public struct HostTracker<Consumer: MessageConsumer>: Service {
    /// Settings of host tracking.
    public struct Configuration: Sendable {
        /// A host silent for longer than this is offline and its runs are given up.
        public var offlineGrace: Duration = .seconds(30)
        /// How often silent hosts are looked for.
        public var sweepInterval: Duration = .seconds(2)
        public init() {}
    }

    let store: any RunEventStore
    let consumer: Consumer
    let producer: any MessageProducer
    let configuration: Configuration
    let logger: Logger
    let outboxWritten: @Sendable () -> Void
    let hostKeys: HostKeys

    /// - Parameters:
    ///   - consumer: A group consumer of `agentjobs.host-events`.
    ///   - producer: Publishes run records of given-up runs and dead letters.
    public init(
        store: any RunEventStore, consumer: Consumer, producer: any MessageProducer,
        configuration: Configuration = .init(),
        logger: Logger, outboxWritten: @escaping @Sendable () -> Void = {}
    ) {
        self.store = store
        self.consumer = consumer
        self.producer = producer
        self.configuration = configuration
        self.logger = logger
        self.outboxWritten = outboxWritten
        self.hostKeys = HostKeys(store: store)
    }

    public func run() async throws {
        logger.info("host tracking started", metadata: ["offline_grace": "\(configuration.offlineGrace)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sweepLoop() }
            for try await message in consumer.messages {
                while true {
                    do {
                        try await handle(message)
                        break
                    } catch {
                        logger.error("heartbeat handling failed; retrying", metadata: ["error": "\(error)"])
                        try await Task.sleep(for: .seconds(1))
                    }
                }
            }
            group.cancelAll()
        }
        // Return only once asked to (see StatusAggregator).
        try? await gracefulShutdown()
        logger.info("host tracking stopped")
    }

    func handle(_ message: IncomingMessage) async throws {
        do {
            let wire = try WireMessage(message)
            let heartbeat = try wire.decode(HostHeartbeat.self)
            guard wire.envelope.key == heartbeat.hostId,
                wire.envelope.source == WireEnvelope.hostSource(heartbeat.hostId)
            else {
                throw WireError(.undecodableBody, "heartbeat body, key and source disagree")
            }
            try await hostKeys.verify(wire, hostId: heartbeat.hostId)
            let stopped = try await store.recordHeartbeat(heartbeat, now: Date())
            if !stopped.isEmpty {
                logger.warning(
                    "host reports runs that are already closed; asked it to stop them",
                    metadata: ["host_id": "\(heartbeat.hostId)", "run_ids": "\(stopped.joined(separator: ","))"])
                outboxWritten()
            }
        } catch let error as WireError {
            logger.warning(
                "dead-lettering a host event", metadata: ["reason": "\(error)", "offset": "\(message.position)"])
            _ = try await producer.send(.deadLetter(for: message, reason: error.description))
        }
        try await consumer.commit(message)
    }

    private func sweepLoop() async throws {
        while !Task.isCancelled {
            do {
                try await sweep(now: Date())
            } catch {
                logger.error("silent-host sweep failed; retrying", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: configuration.sweepInterval)
        }
    }

    /// Gives up on the runs of hosts silent for longer than the grace period.
    func sweep(now: Date) async throws {
        let silentSince = now.addingTimeInterval(-configuration.offlineGrace.seconds)
        let expired = try await store.expireRunsOfSilentHosts(silentSince: silentSince, now: now)
        let runs = expired.lost + expired.timedOut
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
        let records = runs.map { RunStatusRecord(run: $0, revision: $0.statusRevision).message(at: now) }
        for result in await producer.sendBatch(records) {
            if case .failure(let error) = result {
                logger.warning("run record not published", metadata: ["error": "\(error)"])
            }
        }
    }
}
