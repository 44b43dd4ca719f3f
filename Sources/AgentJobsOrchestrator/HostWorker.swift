import AgentJobsCore
import AgentJobsLifecycle
import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle

/// The orchestrator of one host: reads the host's dispatch commands, launches agents through a
/// driver, enforces the queue deadline and run timeout, stops agents on cancel, and publishes
/// signed lifecycle events and heartbeats.
///
/// Exactly-once launch rests on the ``RunJournal``: a dispatch is recorded durably before its
/// offset is committed and before anything is launched, and a run already in the journal is never
/// launched again — whether the dispatch is redelivered, replayed or read after a restart. Events
/// are journaled before they are published and published again after a restart until the
/// transport acknowledges them (consumers deduplicate by event id).
public struct HostWorker<Consumer: MessageConsumer>: Service {
    /// Settings of the worker.
    public struct Configuration: Sendable {
        /// Time between SIGTERM and SIGKILL when stopping an agent.
        public var stopGrace: Duration = .seconds(10)
        /// Time between heartbeats (which also retry unpublished events).
        public var heartbeatInterval: Duration = .seconds(5)
        /// Dispatch commands handled per batch.
        public var batchSize = 256
        /// After a start, the first dispatches are held until the consumer has read to the end of
        /// its partitions, or, with a consumer that cannot tell, until this long passes with
        /// nothing new (at most ten times this): a cancel the host missed while it was away may
        /// come in a later fetch than its dispatch, and must be seen before the launch.
        public var backlogSettle: Duration = .seconds(1)
        /// Reported in heartbeats.
        public var version = "dev"
        /// Reported in heartbeats (`docker` or `process`).
        public var driverName = "process"
        /// Runs this host launches at once at most (`AGENTJOBS_MAX_CONCURRENT_RUNS`); nil for no
        /// limit. Dispatches beyond it wait on the host, in the order they were read, until a run
        /// ends, a cancel comes or their queue deadline passes; reported in heartbeats.
        public var maxConcurrentRuns: Int?
        /// How long after its end a run's directory and journal record are kept; nil keeps them.
        public var runRetention: Duration?
        /// Time between two removals of ended runs' files (the first at start-up).
        public var retentionInterval: Duration = .seconds(3600)
        public init() {}
    }

    /// Turns a dispatch into what the driver launches.
    public typealias LaunchBuilder = @Sendable (_ dispatch: RunDispatch, _ runDirectory: URL) throws -> AgentLaunch
    /// Builds the error summary of a run that did not succeed.
    public typealias SummaryBuilder =
        @Sendable (_ dispatch: RunDispatch, _ runDirectory: URL, _ exitCode: Int32?) -> String

    let identity: HostIdentity
    let verifier: DispatchVerifier
    let consumer: Consumer
    let producer: any MessageProducer
    let driver: any AgentDriver
    let journal: RunJournal
    let makeLaunch: LaunchBuilder
    let summarize: SummaryBuilder
    let configuration: Configuration
    let clock: @Sendable () -> Date
    let logger: Logger
    let active = ActiveAgents()
    let launchQueue: LaunchQueue

    /// - Parameters:
    ///   - consumer: Reads this host's partition of `agentjobs.dispatch` by manual assignment with
    ///     a key filter of the host id.
    ///   - producer: Publishes run events, heartbeats and dead letters.
    /// - Throws: ``OrchestratorError`` when the identity's signing key is malformed.
    public init(
        identity: HostIdentity, consumer: Consumer, producer: any MessageProducer, driver: any AgentDriver,
        journal: RunJournal, makeLaunch: @escaping LaunchBuilder, summarize: @escaping SummaryBuilder,
        configuration: Configuration = .init(), clock: @escaping @Sendable () -> Date = { Date() }, logger: Logger
    ) throws {
        do {
            verifier = try DispatchVerifier(base64: identity.signingPublicKey)
        } catch {
            throw OrchestratorError(
                code: .hostNotSetUp,
                message:
                    "the host identity's signingPublicKey is not an Ed25519 public key; register again")
        }
        self.identity = identity
        self.consumer = consumer
        self.producer = producer
        self.driver = driver
        self.journal = journal
        self.makeLaunch = makeLaunch
        self.summarize = summarize
        self.configuration = configuration
        self.launchQueue = LaunchQueue(limit: configuration.maxConcurrentRuns)
        self.clock = clock
        var logger = logger
        logger[metadataKey: "host_id"] = "\(identity.hostId)"
        self.logger = logger
    }

    /// What handling a dispatch message asks the loop to do next.
    enum FollowUp: Sendable {
        case supervise(RunRecord, reattach: AgentHandle?)
        case stop(runId: String, AgentHandle)
    }

    /// Refreshes `agentjobs_host_events_unpublished` (events journaled but not yet acknowledged by
    /// the transport): a collector for the metrics endpoint.
    public func collectMetrics() async {
        Gauge(label: "agentjobs_host_events_unpublished").record(await journal.unpublishedEventCount())
    }

    public func run() async throws {
        logger.info("orchestrator started", metadata: ["driver": "\(configuration.driverName)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Runs accepted but not launched before the stop wait until the backlog is read: a
            // cancel for one of them may be in it (the control plane closes a canceled run of an
            // offline host as never launched).
            let caughtUp = OneWayFlag()
            let followUps = try await reconcile()
            // Agents still running hold their slots first (whatever the limit); runs accepted but
            // not launched then line up, in the order of their ids (the order they were queued).
            for case .supervise(let record, .some) in followUps { launchQueue.occupy(record.runId) }
            for followUp in followUps {
                if case .supervise(let record, nil) = followUp {
                    launchQueue.enqueue(record.runId)
                    let wait = configuration.backlogSettle * 5
                    group.addTask {
                        let deadline = ContinuousClock.now + wait
                        while !caughtUp.isSet, ContinuousClock.now < deadline, !Task.isCancelled {
                            try? await Task.sleep(for: .milliseconds(100))
                        }
                        // Stopping meanwhile: launched by the next start instead.
                        guard !Task.isCancelled else {
                            launchQueue.release(record.runId)
                            return
                        }
                        await supervise(record, reattach: nil)
                    }
                } else {
                    add(followUp, to: &group)
                }
            }
            group.addTask { await heartbeatLoop() }
            group.addTask { await republishLoop() }
            group.addTask { await retentionLoop() }
            var firstBatch = true
            intake: while var batch = try await consumer.nextBatch(maxCount: configuration.batchSize) {
                if firstBatch {
                    firstBatch = false
                    batch += await backlog(after: batch)
                }
                let cancels = Set(batch.compactMap(cancelRunId))
                for message in batch {
                    // Stopping while the journal cannot be written: the batch is not committed, and is
                    // read again after the next start (what was journaled is recognised, never run twice).
                    guard let followUps = await handleSafely(message, cancelsInBatch: cancels) else { break intake }
                    for followUp in followUps { add(followUp, to: &group) }
                }
                caughtUp.set()
                // Every dispatch of the batch is in the journal now: its effect on the host is durable.
                let committed: Void? = await retryUntilShutdown(every: .seconds(1)) { error in
                    logger.error("cannot commit dispatch positions; retrying", metadata: ["error": "\(error)"])
                } _: {
                    try await consumer.commit(batch.map(\.position))
                }
                // Stopping (the consumer stops first): read again after the next start and
                // recognised in the journal.
                if committed == nil { break }
            }
            // Shutting down: agents keep running; the next start re-attaches to them.
            group.cancelAll()
        }
        // Open runs' published marks are kept in memory until their next change: written now, the
        // next start has no events to send again before it re-attaches (a broker round trip).
        do {
            try await journal.writePublishedMarks()
        } catch {
            logger.warning(
                "could not write the published marks; the next start sends those events again",
                metadata: ["error": "\(error)"])
        }
        // The consumer stops first; return only once this service is asked to, or the service
        // group sees an early exit.
        try? await gracefulShutdown()
        logger.info("orchestrator stopped")
    }

    /// The rest of the backlog read at start, so a cancel behind a dispatch is in the same batch
    /// and the run is never launched. A consumer that can tell it has read to the end of its
    /// partitions (``MessageConsumer/hasCaughtUp``: past every message written before this start)
    /// ends the wait as soon as it has; the first batch may be one message (Kafka hands out what
    /// it has), so the wait applies whatever that batch holds. With a consumer that cannot tell,
    /// only a first batch that holds a dispatch waits, until a ``Configuration/backlogSettle``
    /// passes without anything new. Either way the wait ends when the batch is full, or after ten
    /// settle periods.
    func backlog(after first: [IncomingMessage]) async -> [IncomingMessage] {
        guard consumer.hasCaughtUp != nil || first.contains(where: { Self.isDispatch($0) }) else { return [] }
        var more: [IncomingMessage] = []
        let deadline = ContinuousClock.now + configuration.backlogSettle * 10
        var quietSince = ContinuousClock.now
        while first.count + more.count < configuration.batchSize, ContinuousClock.now < deadline,
            !Task.isCancelled
        {
            // Asked before the buffer is taken: what it read up to that end is in the buffer then.
            let caughtUp = consumer.hasCaughtUp == true
            let arrived = consumer.bufferedBatch(maxCount: configuration.batchSize - first.count - more.count)
            more += arrived
            if caughtUp { break }
            if !arrived.isEmpty {
                quietSince = .now
            } else if ContinuousClock.now - quietSince >= configuration.backlogSettle {
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return more
    }

    static func isDispatch(_ message: IncomingMessage) -> Bool {
        (try? WireMessage(message))?.typeAndVersion?.type == RunDispatch.type
    }

    func add(_ followUp: FollowUp, to group: inout ThrowingTaskGroup<Void, any Error>) {
        switch followUp {
        case .supervise(let record, let handle):
            // The place in line is taken here, in the order the dispatches were read.
            if handle == nil { launchQueue.enqueue(record.runId) } else { launchQueue.occupy(record.runId) }
            group.addTask { await supervise(record, reattach: handle) }
        case .stop(let runId, let handle):
            group.addTask { await stop(runId: runId, handle, reason: "cancel requested") }
        }
    }
}
