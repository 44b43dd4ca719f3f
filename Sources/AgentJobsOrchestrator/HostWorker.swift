import AgentJobsCore
import AgentJobsLifecycle
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
        /// After a start, the first dispatches are held while more of the backlog keeps arriving
        /// (checked this often, for at most 10 checks): a cancel the host missed while it was away
        /// may come in a later fetch than its dispatch, and must be seen before the launch.
        public var backlogSettle: Duration = .seconds(1)
        /// Reported in heartbeats.
        public var version = "dev"
        /// Reported in heartbeats (`docker` or `process`).
        public var driverName = "process"
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

    public func run() async throws {
        logger.info("orchestrator started", metadata: ["driver": "\(configuration.driverName)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Runs accepted but not launched before the stop wait until the backlog is read: a
            // cancel for one of them may be in it (the control plane closes a canceled run of an
            // offline host as never launched).
            let caughtUp = OneWayFlag()
            for followUp in try await reconcile() {
                if case .supervise(let record, nil) = followUp {
                    let wait = configuration.backlogSettle * 5
                    group.addTask {
                        let deadline = ContinuousClock.now + wait
                        while !caughtUp.isSet, ContinuousClock.now < deadline, !Task.isCancelled {
                            try? await Task.sleep(for: .milliseconds(100))
                        }
                        // Stopping meanwhile: launched by the next start instead.
                        guard !Task.isCancelled else { return }
                        await supervise(record, reattach: nil)
                    }
                } else {
                    add(followUp, to: &group)
                }
            }
            group.addTask { await heartbeatLoop() }
            group.addTask { await republishLoop() }
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
        // The consumer stops first; return only once this service is asked to, or the service
        // group sees an early exit.
        try? await gracefulShutdown()
        logger.info("orchestrator stopped")
    }

    /// The rest of the backlog read at start: when the first batch holds a dispatch, whatever keeps
    /// arriving until a ``Configuration/backlogSettle`` passes without anything new (or a batch is
    /// full), so a cancel behind a dispatch is in the same batch and the run is never launched.
    private func backlog(after first: [IncomingMessage]) async -> [IncomingMessage] {
        guard first.contains(where: { Self.isDispatch($0) }) else { return [] }
        var more: [IncomingMessage] = []
        for _ in 0..<10 {
            try? await Task.sleep(for: configuration.backlogSettle)
            let arrived = consumer.bufferedBatch(maxCount: configuration.batchSize - first.count - more.count)
            more += arrived
            if arrived.isEmpty || first.count + more.count >= configuration.batchSize || Task.isCancelled { break }
        }
        return more
    }

    private static func isDispatch(_ message: IncomingMessage) -> Bool {
        (try? WireMessage(message))?.typeAndVersion?.type == RunDispatch.type
    }

    private func add(_ followUp: FollowUp, to group: inout ThrowingTaskGroup<Void, any Error>) {
        switch followUp {
        case .supervise(let record, let handle):
            group.addTask { await supervise(record, reattach: handle) }
        case .stop(let runId, let handle):
            group.addTask { await stop(runId: runId, handle, reason: "cancel requested") }
        }
    }

    // MARK: Dispatch intake

    private func cancelRunId(_ message: IncomingMessage) -> String? {
        guard let wire = try? WireMessage(message), wire.typeAndVersion?.type == RunCancel.type,
            (try? verifier.verify(wire)) != nil, let cancel = try? wire.decode(RunCancel.self),
            cancel.hostId == identity.hostId
        else { return nil }
        return cancel.runId
    }

    /// Handles a dispatch message; nil when the service stops before its journal record could be
    /// written (nothing may be launched or committed until it can).
    private func handleSafely(_ message: IncomingMessage, cancelsInBatch: Set<String>) async -> [FollowUp]? {
        await retryUntilShutdown(every: .seconds(1)) { error in
            logger.error("cannot record a dispatch message; retrying", metadata: ["error": "\(error)"])
        } _: {
            do {
                return try await handle(message, cancelsInBatch: cancelsInBatch)
            } catch let error as WireError {
                logger.warning(
                    "refusing a dispatch message", metadata: ["reason": "\(error)", "offset": "\(message.position)"])
                await deadLetter(message, reason: error.description)
                return []
            }
        }
    }

    func handle(_ message: IncomingMessage, cancelsInBatch: Set<String>) async throws -> [FollowUp] {
        let wire = try WireMessage(message)
        try verifier.verify(wire)
        switch wire.typeAndVersion?.type {
        case RunDispatch.type:
            let dispatch = try wire.decode(RunDispatch.self)
            guard dispatch.hostId == identity.hostId, wire.envelope.key == identity.hostId else {
                throw WireError(.wrongHost, "dispatch for host \(dispatch.hostId) read by host \(identity.hostId)")
            }
            return try await accept(dispatch, canceledInBatch: cancelsInBatch.contains(dispatch.runId))
        case RunCancel.type:
            let cancel = try wire.decode(RunCancel.self)
            guard cancel.hostId == identity.hostId, wire.envelope.key == identity.hostId else {
                throw WireError(.wrongHost, "cancel for host \(cancel.hostId) read by host \(identity.hostId)")
            }
            return try await cancelRun(cancel)
        default:
            throw WireError(.unknownType, "\(wire.envelope.type) is not a dispatch command")
        }
    }

    private func accept(_ dispatch: RunDispatch, canceledInBatch: Bool) async throws -> [FollowUp] {
        var metadata: Logger.Metadata = ["run_id": "\(dispatch.runId)", "job_id": "\(dispatch.jobId)"]
        if let existing = await journal.record(dispatch.runId) {
            metadata["phase"] = "\(existing.phase.rawValue)"
            logger.info("dispatch already handled; not launching again", metadata: metadata)
            return []
        }
        let now = clock()
        var record = RunRecord(runId: dispatch.runId, dispatch: dispatch)
        if canceledInBatch {
            record.cancelRequested = true
            finish(&record, .canceled, at: now)
            logger.info("dispatch canceled before launch", metadata: metadata)
        } else if now > dispatch.queueDeadline {
            finish(
                &record, .timedOut, at: now,
                errorSummary:
                    "The run was not started before its queue deadline (\(ISO8601.format(dispatch.queueDeadline))); the agent was never launched."
            )
            logger.warning("queue deadline passed; not launching", metadata: metadata)
        } else if !identity.managedAgents.contains(dispatch.agentType) {
            finish(
                &record, .rejected, at: now,
                reason: "agent type \(dispatch.agentType.rawValue) is not managed by this host")
            logger.warning("agent type not managed here; rejected", metadata: metadata)
        } else {
            _ = record.record(.accepted, hostId: identity.hostId, at: now)
        }
        try await journal.save(record)
        guard record.phase != .finished else {
            await publish(record.runId)
            return []
        }
        // The supervisor publishes `accepted` while it launches the agent: the dispatch is durable
        // in the journal now (the contract's condition for committing its offset and launching),
        // and the event is journaled, so a crash before it is acknowledged only publishes it again
        // after the restart. Publishing it here would hold up the intake loop (the next dispatch,
        // the offset commit) and the launch for a transport round trip.
        return [.supervise(record, reattach: nil)]
    }

    private func cancelRun(_ cancel: RunCancel) async throws -> [FollowUp] {
        let metadata: Logger.Metadata = ["run_id": "\(cancel.runId)"]
        guard let record = await journal.record(cancel.runId) else {
            // The cancel overtook its dispatch (or the dispatch never came): close the run here and
            // keep the record, so the dispatch is never launched when it arrives.
            var tombstone = RunRecord(runId: cancel.runId, dispatch: nil)
            tombstone.cancelRequested = true
            finish(&tombstone, .canceled, at: clock())
            try await journal.save(tombstone)
            await publish(cancel.runId)
            logger.info("cancel for a run not dispatched here yet; it will never be launched", metadata: metadata)
            return []
        }
        guard record.phase != .finished, !record.cancelRequested else { return [] }
        try await journal.update(cancel.runId) { $0.cancelRequested = true }
        logger.info("cancel requested", metadata: metadata)
        // The flag is durable before the handle is looked up, and the supervisor registers the handle
        // before it looks at the flag: whichever comes second stops the agent, exactly once.
        if let handle = await active.claimCancelStop(cancel.runId) { return [.stop(runId: cancel.runId, handle)] }
        // Not launched yet (the supervisor sees the flag before launching) or being launched right
        // now (it sees the flag once the agent is registered).
        return []
    }

    // MARK: Supervision

    /// Launches (or re-attaches to) a run's agent, enforces its timeout and reports how it ended.
    func supervise(_ record: RunRecord, reattach: AgentHandle?) async {
        guard let dispatch = record.dispatch else { return }
        var metadata: Logger.Metadata = ["run_id": "\(dispatch.runId)", "job_id": "\(dispatch.jobId)"]
        let directory = journal.directory(of: dispatch.runId)
        let handle: AgentHandle
        if let reattach {
            handle = reattach
        } else {
            guard let current = await journal.record(dispatch.runId), current.phase == .accepted else { return }
            let now = clock()
            if current.cancelRequested {
                await finishAndPublish(dispatch.runId, .canceled)
                return
            }
            if now > dispatch.queueDeadline {
                await finishAndPublish(
                    dispatch.runId, .timedOut,
                    errorSummary: "The run was not started before its queue deadline; the agent was never launched.")
                return
            }
            // `accepted` (journaled by the intake) goes out while the agent starts; it is awaited
            // before the next journal change, so this run's events are never sent twice at once.
            async let acceptedPublished: Void = publish(dispatch.runId)
            do {
                handle = try await driver.launch(try makeLaunch(dispatch, directory))
            } catch {
                await acceptedPublished
                if Task.isCancelled {
                    // The orchestrator is stopping mid-launch: nothing is known about the agent. The
                    // restart's reconcile adopts it if the driver started it, or launches it.
                    logger.info("orchestrator stopping during a launch; resumed on restart", metadata: metadata)
                    return
                }
                logger.warning(
                    "agent could not be launched; rejected", metadata: metadata.merging(["error": "\(error)"]) { $1 })
                await finishAndPublish(dispatch.runId, .rejected, reason: "the agent could not be launched: \(error)")
                return
            }
            await acceptedPublished
            await recordLaunch(dispatch.runId, handle, at: now)
            logger.info("agent started", metadata: metadata)
        }
        await active.register(dispatch.runId, handle)
        let current = await journal.record(dispatch.runId)
        let launchedAt = current?.launchedAt ?? clock()
        let deadline = launchedAt.addingTimeInterval(TimeInterval(dispatch.timeoutSeconds))
        // A cancel recorded while the agent was being launched, or before a restart re-attached to
        // it, found no agent to stop: stop it now (unless the cancel's own stop got there first).
        let stopForCancel = current?.cancelRequested == true ? await active.claimCancelStop(dispatch.runId) : nil

        let exit: AgentExit? = await withTaskGroup(of: AgentExit?.self) { group in
            if let stopForCancel {
                let runMetadata = metadata
                group.addTask {
                    logger.info("stopping an agent whose run was canceled while it started", metadata: runMetadata)
                    await stop(runId: dispatch.runId, stopForCancel, reason: "cancel requested")
                    return nil
                }
            }
            group.addTask {
                do {
                    return try await driver.wait(handle)
                } catch {
                    // Cancelled: the orchestrator is stopping (handled below), the agent is fine.
                    if !Task.isCancelled {
                        logger.error(
                            "lost track of the agent", metadata: ["run_id": "\(dispatch.runId)", "error": "\(error)"])
                    }
                    return nil
                }
            }
            group.addTask {
                let remaining = deadline.timeIntervalSince(clock())
                try? await Task.sleep(for: .milliseconds(Int64(max(0, remaining) * 1000)))
                if Task.isCancelled { return nil }
                await active.markTimedOut(dispatch.runId)
                // Journaled too: a restart during the stop must still report the run timed out.
                await persist(dispatch.runId) { $0.timeoutReachedAt = $0.timeoutReachedAt ?? clock() }
                logger.warning("run timeout reached; stopping the agent", metadata: ["run_id": "\(dispatch.runId)"])
                await stop(runId: dispatch.runId, handle, reason: "run timeout")
                return nil
            }
            var exit: AgentExit?
            // The first result that is an exit ends the race; the timeout task yields nil.
            while let result = await group.next() {
                if let result {
                    exit = result
                    break
                }
                if group.isEmpty { break }
            }
            group.cancelAll()
            return exit
        }
        let (timeoutFired, stoppedForCancel) = await active.unregister(dispatch.runId)
        let timeoutJournaled = await journal.record(dispatch.runId)?.timeoutReachedAt != nil
        let timedOut = timeoutFired || timeoutJournaled
        if exit == nil, Task.isCancelled {
            // The orchestrator is stopping, not the agent: record nothing. The agent keeps running
            // (its own process group or container) and the next start re-attaches to it.
            logger.info("orchestrator stopping; the agent keeps running and is re-attached on restart", metadata: metadata)
            return
        }
        let cancelRequested = await journal.record(dispatch.runId)?.cancelRequested ?? false
        let code = exit?.exitCode
        metadata["exit_code"] = "\(code.map(String.init) ?? "unknown")"
        // Canceled when the cancel's stop ended the agent. An agent that ended on its own (before
        // the stop was sent, or ignoring its SIGTERM and exiting with its own status within the
        // grace) reports its own end, though the cancel was recorded meanwhile.
        if cancelRequested && AgentExit.endsCanceled(exit, stopSentForCancel: stoppedForCancel) {
            await finishAndPublish(dispatch.runId, .canceled, exitCode: code.map(Int.init))
        } else if timedOut {
            let summary =
                "The run exceeded its timeout of \(dispatch.timeoutSeconds) s and was stopped.\n"
                + summarize(dispatch, directory, code)
            await finishAndPublish(dispatch.runId, .timedOut, exitCode: code.map(Int.init), errorSummary: summary)
        } else {
            await finishByExit(dispatch, code)
        }
        await release(dispatch.runId, handle)
        logger.info("agent ended", metadata: metadata)
    }

    /// Lets the driver forget an ended agent once its run's end is in the journal; until then the
    /// driver keeps it, so a restart learns how it ended. A failure is retried by the next start.
    private func release(_ runId: String, _ handle: AgentHandle) async {
        guard await journal.record(runId)?.phase == .finished else { return }
        do {
            try await driver.release(handle)
        } catch {
            logger.warning(
                "could not release the ended agent; retried on restart",
                metadata: ["run_id": "\(runId)", "error": "\(error)"])
        }
    }

    /// Reports a run whose agent ended on its own: `succeeded` on exit code 0, else `failed` with
    /// its summary.
    private func finishByExit(_ dispatch: RunDispatch, _ code: Int32?) async {
        if code == 0 {
            await finishAndPublish(dispatch.runId, .succeeded, exitCode: 0)
        } else {
            await finishAndPublish(
                dispatch.runId, .failed, exitCode: code.map(Int.init),
                errorSummary: summarize(dispatch, journal.directory(of: dispatch.runId), code))
        }
    }

    /// Journals that a run's agent is running (its handle, and the `started` event), then publishes.
    private func recordLaunch(_ runId: String, _ handle: AgentHandle, at now: Date) async {
        await persist(runId) { record in
            record.phase = .launched
            record.handleID = handle.id
            record.launchedAt = now
            _ = record.record(.started, hostId: identity.hostId, at: now)
        }
        await publish(runId)
    }

    /// Stops an agent (SIGTERM, grace, SIGKILL, confirmed gone); if that cannot be confirmed, says
    /// so in a `stop_failed` event instead of hanging.
    /// - Returns: How the stop went, or `nil` when it could not be confirmed (or was interrupted).
    @discardableResult
    func stop(runId: String, _ handle: AgentHandle, reason: String) async -> StopOutcome? {
        do {
            return try await driver.stop(handle, grace: configuration.stopGrace)
        } catch {
            if Task.isCancelled {
                // The orchestrator is stopping: the stop is not known to have failed. The cancel or
                // timeout is in the journal, so the restarted orchestrator stops the agent again.
                logger.info("orchestrator stopping during an agent's stop; resumed on restart", metadata: ["run_id": "\(runId)"])
                return nil
            }
            logger.error("could not stop the agent", metadata: ["run_id": "\(runId)", "error": "\(error)"])
            await persist(runId) { record in
                _ = record.record(
                    .stopFailed, hostId: identity.hostId, at: clock(),
                    reason: "stopping the agent (\(reason)) could not be confirmed: \(error); check the host")
            }
            await publish(runId)
            return nil
        }
    }

    // MARK: Restart

    /// Publishes events left over from before a restart and picks up unfinished runs: re-attaches to
    /// agents still known to the driver, reports agents that ended while the orchestrator was down,
    /// and launches accepted runs (unless their deadline passed).
    func reconcile() async throws -> [FollowUp] {
        let handles = Dictionary(
            try await driver.list().map { ($0.runId, $0) }, uniquingKeysWith: { first, _ in first })
        var followUps: [FollowUp] = []
        // Agents whose end was journaled just before the stop, but not released yet.
        for handle in handles.values {
            await release(handle.runId, handle)
        }
        for record in await journal.openRecords() {
            await publish(record.runId)
            switch record.phase {
            case .finished:
                continue
            case .accepted:
                guard let handle = handles[record.runId] else {
                    followUps.append(.supervise(record, reattach: nil))
                    continue
                }
                // Launched just before the crash, before the journal recorded it: the agent is
                // running. Adopt it; launching again would start the run twice (the driver refuses,
                // and the run would be reported rejected while its agent ran on).
                logger.info(
                    "re-attached to an agent launched before the restart", metadata: ["run_id": "\(record.runId)"])
                await recordLaunch(record.runId, handle, at: clock())
                followUps.append(.supervise(await journal.record(record.runId) ?? record, reattach: handle))
            case .launched:
                if let handle = handles[record.runId] {
                    logger.info("re-attached to a running agent", metadata: ["run_id": "\(record.runId)"])
                    followUps.append(.supervise(record, reattach: handle))
                } else {
                    let summary =
                        "The agent ended while the orchestrator was not running; its exit status is unknown.\n"
                        + (record.dispatch.map { summarize($0, journal.directory(of: record.runId), nil) } ?? "")
                    await finishAndPublish(
                        record.runId, record.cancelRequested ? .canceled : .failed, errorSummary: summary)
                }
            }
        }
        return followUps
    }

    // MARK: Drain

    /// Stops every agent of this host with the confirmed-stop procedure (SIGTERM, grace, SIGKILL,
    /// confirmed gone) and reports their runs `canceled` with the reason; accepted runs not launched
    /// yet are canceled without launching. Reads no dispatch. For hosts being retired
    /// (`agentjobs orchestrate --drain`); run it while no other orchestrator of this host runs.
    /// - Returns: How many runs were canceled.
    /// - Throws: When the driver cannot list its agents.
    public func drain() async throws -> Int {
        let handles = Dictionary(
            try await driver.list().map { ($0.runId, $0) }, uniquingKeysWith: { first, _ in first })
        let open = await journal.openRecords()
        for record in open { await publish(record.runId) }
        let summary =
            "Canceled: host \(identity.name) (\(identity.hostId)) was drained with `agentjobs orchestrate --drain`; its agent was stopped."
        return await withTaskGroup(of: Bool.self) { group in
            for record in open where record.phase != .finished {
                group.addTask {
                    let metadata: Logger.Metadata = ["run_id": "\(record.runId)"]
                    if let handle = handles[record.runId] {
                        guard let outcome = await stop(runId: record.runId, handle, reason: "host drained") else {
                            return false
                        }
                        if outcome.alreadyEnded, let dispatch = record.dispatch {
                            // It ended on its own before the drain: report how, not a cancel.
                            await finishByExit(dispatch, outcome.exit.exitCode)
                            await release(record.runId, handle)
                            return false
                        }
                    }
                    await persist(record.runId) { $0.cancelRequested = true }
                    await finishAndPublish(record.runId, .canceled, errorSummary: summary)
                    if let handle = handles[record.runId] { await release(record.runId, handle) }
                    logger.info("run canceled by the drain", metadata: metadata)
                    return true
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
    }

    // MARK: Events

    private func finish(
        _ record: inout RunRecord, _ type: RunEventType, at now: Date, exitCode: Int? = nil,
        errorSummary: String? = nil,
        reason: String? = nil
    ) {
        record.phase = .finished
        record.outcome = type
        _ = record.record(
            type, hostId: identity.hostId, at: now, exitCode: exitCode,
            errorSummary: errorSummary.map { ErrorSummary.capped($0) },
            reason: reason)
    }

    private func finishAndPublish(
        _ runId: String, _ type: RunEventType, exitCode: Int? = nil, errorSummary: String? = nil, reason: String? = nil
    ) async {
        let now = clock()
        await persist(runId) { record in
            guard record.phase != .finished else { return }
            finish(&record, type, at: now, exitCode: exitCode, errorSummary: errorSummary, reason: reason)
        }
        await publish(runId)
    }

    /// Changes a journal record, retrying until the change is durable (an event that is not in the
    /// journal could be lost by a crash).
    /// Stopping gives up: the driver keeps an ended agent until ``release``, so the next start finds
    /// its end again.
    private func persist(_ runId: String, _ change: @escaping @Sendable (inout RunRecord) -> Void) async {
        _ = await retryUntilShutdown(every: .seconds(1)) { error in
            logger.error("cannot write the run journal; retrying", metadata: ["run_id": "\(runId)", "error": "\(error)"])
        } _: {
            try await journal.update(runId, change)
        }
    }

    /// Publishes a run's unpublished events; what fails stays in the journal for the next attempt.
    private func publish(_ runId: String) async {
        guard let record = await journal.record(runId), !record.unpublished.isEmpty else { return }
        let key = identity.eventKey
        do {
            let messages = try record.unpublished.map { try $0.message(signedWith: key) }
            let results = await producer.sendBatch(messages)
            var published = 0
            for (event, result) in zip(record.unpublished, results) {
                guard case .success = result else { break }
                published = event.sequence
            }
            if published > 0 { try await journal.markPublished(runId: runId, upTo: published) }
            if published != record.unpublished.last?.sequence {
                logger.warning("run events not published yet; will retry", metadata: ["run_id": "\(runId)"])
            }
        } catch {
            logger.warning(
                "run events not published yet; will retry", metadata: ["run_id": "\(runId)", "error": "\(error)"])
        }
    }

    private func deadLetter(_ message: IncomingMessage, reason: String) async {
        do {
            _ = try await producer.send(.deadLetter(for: message, reason: reason))
        } catch {
            logger.error("could not dead-letter a refused dispatch message", metadata: ["error": "\(error)"])
        }
    }

    private func heartbeatLoop() async {
        while !Task.isCancelled {
            let open = await journal.openRecords()
            let activeRuns = open.filter { $0.phase != .finished }.map { record in
                HostHeartbeat.ActiveRun(
                    runId: record.runId, dispatchEpoch: record.dispatch?.dispatchEpoch ?? 1,
                    status: record.phase == .launched ? .running : .queued)
            }
            let heartbeat = HostHeartbeat(
                hostId: identity.hostId, sentAt: clock(), version: configuration.version,
                managedAgents: identity.managedAgents,
                activeRuns: activeRuns, driver: configuration.driverName)
            do {
                _ = try await producer.send(try heartbeat.message(signedWith: identity.eventKey))
            } catch {
                logger.warning("heartbeat not published", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: configuration.heartbeatInterval)
        }
    }

    /// Publishes events left unpublished (the transport failed), at the heartbeat pace. Apart from
    /// the heartbeats: a retry can wait for the transport's whole delivery timeout, and heartbeats
    /// queued behind it would make a healthy host look silent.
    private func republishLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.heartbeatInterval)
            for record in await journal.openRecords() where !record.unpublished.isEmpty {
                if Task.isCancelled { return }
                await publish(record.runId)
            }
        }
    }
}

/// The agents running right now, for cancels and timeouts.
actor ActiveAgents {
    private var handles: [String: AgentHandle] = [:]
    private var timedOut: Set<String> = []

    private var stoppedForCancel: Set<String> = []

    func register(_ runId: String, _ handle: AgentHandle) { handles[runId] = handle }
    func markTimedOut(_ runId: String) { timedOut.insert(runId) }

    /// The handle of a running agent that a cancel is to stop, handed out once per run: `nil`
    /// when the agent is not registered (yet) or a stop for the cancel was already claimed.
    func claimCancelStop(_ runId: String) -> AgentHandle? {
        guard let handle = handles[runId], stoppedForCancel.insert(runId).inserted else { return nil }
        return handle
    }

    /// Forgets a run.
    /// - Returns: Whether its timeout fired, and whether a stop for a cancel was claimed.
    func unregister(_ runId: String) -> (timedOut: Bool, stoppedForCancel: Bool) {
        handles[runId] = nil
        return (timedOut.remove(runId) != nil, stoppedForCancel.remove(runId) != nil)
    }
}
