import AgentJobsCore
import AgentJobsStore
import Logging
import ServiceLifecycle

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Folds the hosts' run lifecycle events (`agentjobs.run-events`) into the store: the status
/// aggregator. Run it with a consumer-group consumer; add replicas to scale (events are keyed by
/// run id, so one run's events stay in order on one replica).
///
/// For each batch: decode and authenticate every event (HMAC with the credential of the host it
/// claims to come from) and dead-letter what fails; apply the rest in one store transaction
/// through the run state machine (idempotent: duplicates and stale events change nothing, and an
/// event from a host other than the run's is dead-lettered); publish the resulting run records to
/// `agentjobs.run-status`; and only then commit the batch's offsets. A crash anywhere re-reads
/// the uncommitted batch, which applies as no-ops and re-publishes the same records.
public struct StatusAggregator<Consumer: MessageConsumer>: Service {
    /// Settings of the aggregator.
    public struct Configuration: Sendable {
        /// Events applied per store transaction at most.
        public var batchSize = 2000
        /// Wait after a failed batch before trying it again.
        public var retryInterval: Duration = .seconds(1)
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
    ///   - consumer: A group consumer of `agentjobs.run-events`.
    ///   - producer: Publishes run records and dead letters.
    ///   - outboxWritten: Called when the aggregator wrote `RunCancel` commands to the outbox (in
    ///     the embedded shape this wakes the in-process relay).
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
        logger.info("status aggregator started")
        let batcher = MessageBatcher(capacity: configuration.batchSize * 2)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await batcher.pump(consumer.messages) }
            while let batch = try await batcher.next(maxCount: configuration.batchSize) {
                while true {
                    do {
                        try await handle(batch)
                        break
                    } catch {
                        logger.error(
                            "event batch failed; retrying it",
                            metadata: ["error": "\(error)", "events": "\(batch.count)"])
                        try await Task.sleep(for: configuration.retryInterval)
                    }
                }
            }
            try await group.waitForAll()
        }
        // The consumer's sequence ends when the consumer is shut down, which the service group does
        // before it asks this service: return only once asked, or the group sees an early exit.
        try? await gracefulShutdown()
        logger.info("status aggregator stopped")
    }

    /// Handles one batch: verify, apply, publish, commit.
    /// - Throws: A store, transport or commit error; the batch may then be handled again.
    func handle(_ batch: [IncomingMessage]) async throws {
        var events: [RunLifecycleEvent] = []
        var eventMessages: [IncomingMessage] = []
        var outgoing: [OutgoingMessage] = []
        for message in batch {
            do {
                let wire = try WireMessage(message)
                let event = try RunLifecycleEvent.decode(wire)
                try await hostKeys.verify(wire, hostId: event.hostId)
                events.append(event)
                eventMessages.append(message)
            } catch let error as WireError {
                logger.warning(
                    "dead-lettering a run event", metadata: ["reason": "\(error)", "offset": "\(message.position)"])
                outgoing.append(.deadLetter(for: message, reason: error.description))
            }
        }
        let now = Date()
        let outcomes = events.isEmpty ? [] : try await store.applyRunEvents(events, now: now)
        var records: [String: RunStatusRecord] = [:]
        var requestedStops = false
        for ((event, message), outcome) in zip(zip(events, eventMessages), outcomes) {
            var metadata: Logger.Metadata = [
                "run_id": "\(event.runId)", "host_id": "\(event.hostId)", "event": "\(event.type.rawValue)",
                "sequence": "\(event.sequence)",
            ]
            switch outcome {
            case .applied(let run):
                metadata["status"] = "\(run.status.rawValue)"
                logger.info("run status changed", metadata: metadata)
            case .ignored(_, let reason):
                metadata["reason"] = "\(reason)"
                logger.debug("run event changed nothing", metadata: metadata)
            case .stopRequested:
                logger.warning("host started a run that is already closed; asked it to stop", metadata: metadata)
                requestedStops = true
            case .unknownRun:
                outgoing.append(.deadLetter(for: message, reason: "unknown_run: no run \(event.runId)"))
            case .wrongHost(let expected):
                metadata["dispatched_to"] = "\(expected)"
                logger.warning("dead-lettering an event from a host the run was not dispatched to", metadata: metadata)
                outgoing.append(
                    .deadLetter(
                        for: message,
                        reason: "wrong_host: run \(event.runId) was dispatched to \(expected), not \(event.hostId)"))
            }
            if let run = outcome.run { records[run.id] = RunStatusRecord(run: run, revision: run.statusRevision) }
        }
        if requestedStops { outboxWritten() }
        for record in records.values { outgoing.append(try record.message(at: now)) }
        if !outgoing.isEmpty {
            let results = await producer.sendBatch(outgoing)
            for result in results {
                if case .failure(let error) = result { throw error }
            }
        }
        try await consumer.commit(batch.map(\.position))
    }
}

extension Run {
    /// Increases with every status change the aggregator can apply (queued 1, running 2, ended 3),
    /// so downstream consumers of `agentjobs.run-status` can keep the newest record.
    public var statusRevision: Int {
        switch status {
        case .queued: return 1
        case .running: return 2
        case .succeeded, .failed, .timedOut, .canceled: return 3
        }
    }
}

/// Hosts' event-signing keys, read from the store once per host.
actor HostKeys {
    private let store: any RunEventStore
    private var keys: [String: HostEventKey] = [:]

    init(store: any RunEventStore) { self.store = store }

    /// Checks that `message` is signed by `hostId`.
    /// - Throws: ``WireError`` `unknownHost` or `badSignature`; store errors as they are.
    func verify(_ message: WireMessage, hostId: String) async throws {
        if keys[hostId] == nil {
            guard let hash = try await store.hostCredentialHash(hostId: hostId) else {
                throw WireError(.unknownHost, "no registered host \(hostId)")
            }
            keys[hostId] = HostEventKey(credentialHash: hash)
        }
        try Self.check(message, with: keys[hostId]!)
    }

    /// The typed-throws call kept out of the async function: Swift 6.3's release build crashes
    /// (signal 11 in LLVM's coroutine splitting, swifterror) when `verify` calls it inline.
    @inline(never)
    private static func check(_ message: WireMessage, with key: HostEventKey) throws {
        try key.verify(message)
    }
}
