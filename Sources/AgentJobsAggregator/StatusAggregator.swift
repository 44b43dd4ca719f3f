import AgentJobsCore
import AgentJobsLifecycle
import AgentJobsStore
import AgentJobsTelemetry
import CoreMetrics
import Logging
import ServiceLifecycle
import Tracing

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
        /// Events applied per store transaction at most. A batch is what the consumer has buffered
        /// when the aggregator asks, so give the consumer room for about two (`bufferCapacity`).
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
    let hostKeys: HostKeys

    /// - Parameters:
    ///   - consumer: A group consumer of `agentjobs.run-events`.
    ///   - producer: Publishes run records and dead letters.
    public init(
        store: any RunEventStore, consumer: Consumer, producer: any MessageProducer,
        configuration: Configuration = .init(),
        logger: Logger
    ) {
        self.store = store
        self.consumer = consumer
        self.producer = producer
        self.configuration = configuration
        self.logger = logger
        self.hostKeys = HostKeys(store: store)
    }

    public func run() async throws {
        logger.info("status aggregator started")
        let verified = BatchHandoff<VerifiedBatch>()
        do {
            try await pipeline(verified: verified)
        } catch let stopped as StoppedWithEventsInFlight {
            logger.notice(
                "stopping with a batch not committed; its events are applied again after the next start",
                metadata: ["events": "\(stopped.events)"])
        }
        // The consumer's sequence ends when the consumer is shut down, which the service group does
        // before it asks this service: return only once asked, or the group sees an early exit.
        try? await gracefulShutdown()
        logger.info("status aggregator stopped")
    }

    private func pipeline(verified: BatchHandoff<VerifiedBatch>) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Three stages, each batch passing through them in order: verify (decode and
            // authenticate: CPU, in its own task, at most one batch ahead), apply (one store
            // transaction), publish (run records and dead letters, then the offset commit: mostly
            // waiting for the transport). Batch N is applied while N+1 is verified and N-1 is
            // published; batches apply, publish and commit strictly in order, and a batch's offsets
            // are committed only after its changes are in the store and its records acknowledged.
            group.addTask {
                do {
                    while let messages = try await consumer.nextBatch(maxCount: configuration.batchSize) {
                        await verified.put(try await retrying(messages.count) { try await verify(messages) })
                    }
                    await verified.finish()
                } catch {
                    await verified.finish(throwing: error)
                }
            }
            do {
                var applied: AppliedBatch?
                while true {
                    let previous = applied
                    async let published: Void = publishRetrying(previous)
                    guard let batch = try await verified.take() else {
                        try await published
                        break
                    }
                    let next = try await retrying(batch.messages.count) { try await apply(batch) }
                    try await published
                    applied = next
                }
            } catch {
                await verified.close()
                throw error
            }
            try await group.waitForAll()
        }
    }

    /// A batch whose events were decoded and authenticated, ready to apply.
    struct VerifiedBatch: Sendable {
        var messages: [IncomingMessage]
        var events: [RunLifecycleEvent] = []
        /// For each of `events`, the index of its message in `messages`.
        var eventIndices: [Int] = []
        /// For each of `events`, the trace context its message carried (``TraceParent``).
        var traceParents: [String?] = []
        /// Dead letters for the messages that could not be decoded or verified.
        var deadLetters: [OutgoingMessage] = []
        /// Each dead letter's reason, for the metrics.
        var deadLetterReasons: [String] = []
    }

    /// A batch applied to the store, with what is left to do: log, publish, then commit.
    struct AppliedBatch: Sendable {
        var verified: VerifiedBatch
        var outcomes: [RunEventOutcome]
        /// When the batch was applied: the time of its run records.
        var appliedAt: Date
        /// Run records and dead letters, made by ``outgoing()`` after the store transaction.
        var outgoing: [OutgoingMessage]?
        var positions: [MessagePosition] { verified.messages.map(\.position) }
    }

    /// Runs `step` until it succeeds: a failed store or transport call leaves nothing half done
    /// (applying again changes nothing; offsets are committed only after everything else).
    /// - Throws: ``StoppedWithEventsInFlight`` when a step failed after SIGTERM (see
    ///   ``retryUntilShutdown(every:failed:_:)``).
    private func retrying<T>(_ events: Int, _ step: () async throws -> T) async throws -> T {
        let result = await retryUntilShutdown(every: configuration.retryInterval) { error in
            logger.error("event batch failed; retrying it", metadata: ["error": "\(error)", "events": "\(events)"])
        } _: {
            try await step()
        }
        guard let result else { throw StoppedWithEventsInFlight(events: events) }
        return result
    }

    /// The aggregator was asked to stop while a batch could not be finished (typically its commit,
    /// after the consumer stopped): its events are read and applied again after the next start.
    struct StoppedWithEventsInFlight: Error {
        var events: Int
    }

    private func publishRetrying(_ batch: AppliedBatch?) async throws {
        guard var batch else { return }
        try await retrying(batch.verified.messages.count) { try await publish(&batch) }
    }

    /// Logs an applied batch's changes and publishes its records and dead letters (made once, kept
    /// for a retry), then commits its offsets.
    func publish(_ batch: inout AppliedBatch) async throws {
        let outgoing = batch.outgoing ?? report(batch)
        batch.outgoing = outgoing
        if !outgoing.isEmpty {
            let results = await producer.sendBatch(outgoing)
            for result in results {
                if case .failure(let error) = result { throw error }
            }
        }
        try await consumer.commit(batch.positions)
    }

    /// Decodes and authenticates every message; what fails becomes a dead letter.
    /// - Throws: Store errors from looking up a host's key (the batch is then read again).
    func verify(_ batch: [IncomingMessage]) async throws -> VerifiedBatch {
        var verified = VerifiedBatch(messages: batch)
        let decoded = decode(batch, into: &verified)
        // One trip to the key cache per batch rather than per event.
        let keys = try await hostKeys.keys(for: Set(decoded.map(\.event.hostId)))
        authenticate(decoded, keys: keys, into: &verified)
        return verified
    }

    /// An event decoded from `messages[index]`, not yet authenticated.
    private typealias DecodedEvent = (index: Int, wire: WireMessage, event: RunLifecycleEvent)

    // `decode` and `authenticate` stay synchronous: Swift 6.3's release build crashes (signal 11 in
    // LLVM's coroutine splitting, swifterror) on some typed-throws calls made inline in async code.

    private func decode(_ batch: [IncomingMessage], into verified: inout VerifiedBatch) -> [DecodedEvent] {
        var decoded: [DecodedEvent] = []
        decoded.reserveCapacity(batch.count)
        for (index, message) in batch.enumerated() {
            do {
                let wire = try WireMessage(message)
                decoded.append((index, wire, try RunLifecycleEvent.decode(wire)))
            } catch {
                deadLetter(message, error, into: &verified)
            }
        }
        return decoded
    }

    private func authenticate(
        _ decoded: [DecodedEvent], keys: [String: HostEventKey], into verified: inout VerifiedBatch
    ) {
        verified.events.reserveCapacity(decoded.count)
        verified.eventIndices.reserveCapacity(decoded.count)
        for (index, wire, event) in decoded {
            do throws(WireError) {
                guard let key = keys[event.hostId] else {
                    throw WireError(.unknownHost, "no registered host \(event.hostId)")
                }
                try key.verify(wire)
                verified.events.append(event)
                verified.eventIndices.append(index)
                verified.traceParents.append(TraceParent.of(verified.messages[index]))
            } catch {
                deadLetter(verified.messages[index], error, into: &verified)
            }
        }
    }

    private func deadLetter(_ message: IncomingMessage, _ error: WireError, into verified: inout VerifiedBatch) {
        logger.warning("dead-lettering a run event", metadata: ["reason": "\(error)", "offset": "\(message.position)"])
        verified.deadLetters.append(.deadLetter(for: message, reason: error.description))
        verified.deadLetterReasons.append(error.description)
    }

    /// Applies a verified batch in one store transaction. Only the transaction runs here: logging
    /// and building the records happen in the publish stage (``report(_:)``), next to the
    /// following batch's transaction, because batches apply strictly one after the other.
    func apply(_ batch: VerifiedBatch) async throws -> AppliedBatch {
        let now = Date()
        let start = ContinuousClock.now
        // A span per traced event, under the trace its host sent it in (when tracing is on).
        let spans = zip(batch.events, batch.traceParents).compactMap { event, traceParent -> (any Tracing.Span)? in
            guard let traceParent else { return nil }
            let span = startSpan(
                "agentjobs.apply_run_event", context: RunTracing.context(continuing: traceParent), ofKind: .consumer)
            span.attributes["agentjobs.run_id"] = event.runId
            span.attributes["agentjobs.event"] = event.type.rawValue
            return span
        }
        defer { for span in spans { span.end() } }
        let outcomes = batch.events.isEmpty ? [] : try await store.applyRunEvents(batch.events, now: now)
        Self.applyTime.record(ContinuousClock.now - start)
        return AppliedBatch(verified: batch, outcomes: outcomes, appliedAt: now)
    }

    /// Logs what an applied batch changed and returns what to publish: its dead letters, those of
    /// events the store refused, and the newest record of every run it touched.
    func report(_ batch: AppliedBatch) -> [OutgoingMessage] {
        var outgoing = batch.verified.deadLetters
        Self.batchEvents.record(batch.verified.messages.count)
        for reason in batch.verified.deadLetterReasons {
            TransportMetrics.deadLettered(from: Topic.runEvents, reason: reason)
        }
        var applied = 0
        var ignored = 0
        var records: [String: RunStatusRecord] = [:]
        let events = batch.verified.events
        for ((event, index), outcome) in zip(zip(events, batch.verified.eventIndices), batch.outcomes) {
            var message: IncomingMessage { batch.verified.messages[index] }
            switch outcome {
            case .applied(let run):
                applied += 1
                if run.status == .running && event.type == .started {
                    RunMetrics.started(run, appliedAt: batch.appliedAt)
                } else if run.status.isTerminal {
                    RunMetrics.ended(run, appliedAt: batch.appliedAt)
                }
                logger.info(
                    "run status changed",
                    metadata: [
                        "run_id": "\(event.runId)", "host_id": "\(event.hostId)", "event": "\(event.type.rawValue)",
                        "sequence": "\(event.sequence)", "status": "\(run.status.rawValue)",
                    ])
            case .ignored(_, let reason):
                ignored += 1
                logger.debug(
                    "run event changed nothing",
                    metadata: [
                        "run_id": "\(event.runId)", "host_id": "\(event.hostId)", "event": "\(event.type.rawValue)",
                        "sequence": "\(event.sequence)", "reason": "\(reason)",
                    ])
            case .stopRequested:
                logger.warning(
                    "host started a run that is already closed; asked it to stop",
                    metadata: [
                        "run_id": "\(event.runId)", "host_id": "\(event.hostId)", "event": "\(event.type.rawValue)",
                        "sequence": "\(event.sequence)",
                    ])
            case .unknownRun:
                TransportMetrics.deadLettered(from: Topic.runEvents, reason: "unknown_run")
                outgoing.append(.deadLetter(for: message, reason: "unknown_run: no run \(event.runId)"))
            case .wrongHost(let expected):
                TransportMetrics.deadLettered(from: Topic.runEvents, reason: WireError.Code.wrongHost.rawValue)
                logger.warning(
                    "dead-lettering an event from a host the run was not dispatched to",
                    metadata: [
                        "run_id": "\(event.runId)", "host_id": "\(event.hostId)", "event": "\(event.type.rawValue)",
                        "sequence": "\(event.sequence)", "dispatched_to": "\(expected)",
                    ])
                outgoing.append(
                    .deadLetter(
                        for: message,
                        reason: "wrong_host: run \(event.runId) was dispatched to \(expected), not \(event.hostId)"))
            }
            if let run = outcome.run { records[run.id] = RunStatusRecord(run: run, revision: run.statusRevision) }
        }
        for record in records.values { outgoing.append(record.message(at: batch.appliedAt)) }
        Self.eventsApplied.increment(by: applied)
        Self.eventsIgnored.increment(by: ignored)
        return outgoing
    }
}

extension StatusAggregator {
    static var applyTime: CoreMetrics.Timer { CoreMetrics.Timer(label: "agentjobs_aggregator_apply_seconds") }
    static var batchEvents: Recorder { Recorder(label: "agentjobs_aggregator_batch_events") }
    static var eventsApplied: Counter {
        Counter(label: "agentjobs_aggregator_events_total", dimensions: [("outcome", "applied")])
    }
    static var eventsIgnored: Counter {
        Counter(label: "agentjobs_aggregator_events_total", dimensions: [("outcome", "ignored")])
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

/// Hosts' event-signing keys, read from the store and kept for ``lifetime``: a host whose
/// credential was replaced (or that was removed) is refused by every replica within that time.
actor HostKeys {
    /// How long a key read from the store is trusted.
    static let lifetime: Duration = .seconds(4)

    private let store: any RunEventStore
    private var keys: [String: (key: HostEventKey?, expires: ContinuousClock.Instant)] = [:]

    init(store: any RunEventStore) { self.store = store }

    /// The keys of those of `hostIds` that are registered hosts.
    /// - Throws: Store errors as they are.
    func keys(for hostIds: Set<String>) async throws -> [String: HostEventKey] {
        var found: [String: HostEventKey] = [:]
        let now = ContinuousClock.now
        for hostId in hostIds {
            if let cached = keys[hostId], cached.expires > now {
                found[hostId] = cached.key
                continue
            }
            let key = try await store.hostCredentialHash(hostId: hostId).map { hash in
                hash.hasPrefix(Host.revokedCredentialPrefix)
                    ? HostEventKey.revoked : HostEventKey(credentialHash: hash)
            }
            if keys.count >= 100_000 { keys.removeAll(keepingCapacity: true) }
            keys[hostId] = (key, now.advanced(by: Self.lifetime))
            found[hostId] = key
        }
        return found
    }

    /// Checks that `message` is signed by `hostId`.
    /// - Throws: ``WireError`` `unknownHost` or `badSignature`; store errors as they are.
    func verify(_ message: WireMessage, hostId: String) async throws {
        try Self.check(message, with: try await keys(for: [hostId])[hostId], hostId: hostId)
    }

    /// The typed-throws call kept out of the async function: Swift 6.3's release build crashes
    /// (signal 11 in LLVM's coroutine splitting, swifterror) when `verify` calls it inline.
    @inline(never)
    private static func check(_ message: WireMessage, with key: HostEventKey?, hostId: String) throws {
        guard let key else { throw WireError(.unknownHost, "no registered host \(hostId)") }
        try key.verify(message)
    }
}
