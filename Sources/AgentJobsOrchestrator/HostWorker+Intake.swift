import AgentJobsCore
import AgentJobsLifecycle
import Foundation
import Logging
import ServiceLifecycle

// MARK: Dispatch intake

extension HostWorker {
    func cancelRunId(_ message: IncomingMessage) -> String? {
        guard let wire = try? WireMessage(message), wire.typeAndVersion?.type == RunCancel.type,
            (try? verifier.verify(wire)) != nil, let cancel = try? wire.decode(RunCancel.self),
            cancel.hostId == identity.hostId
        else { return nil }
        return cancel.runId
    }

    /// Handles a dispatch message; nil when the service stops before its journal record could be
    /// written (nothing may be launched or committed until it can).
    func handleSafely(_ message: IncomingMessage, cancelsInBatch: Set<String>) async -> [FollowUp]? {
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
            return try await accept(
                dispatch, canceledInBatch: cancelsInBatch.contains(dispatch.runId), traceParent: TraceParent.of(message)
            )
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

    func accept(_ dispatch: RunDispatch, canceledInBatch: Bool, traceParent: String? = nil) async throws -> [FollowUp] {
        var metadata: Logger.Metadata = ["run_id": "\(dispatch.runId)", "job_id": "\(dispatch.jobId)"]
        if let existing = await journal.record(dispatch.runId) {
            metadata["phase"] = "\(existing.phase.rawValue)"
            logger.info("dispatch already handled; not launching again", metadata: metadata)
            return []
        }
        let now = clock()
        var record = RunRecord(runId: dispatch.runId, dispatch: dispatch)
        record.traceParent = traceParent
        switch RunSupervision.admission(
            dispatch, cancelRequested: canceledInBatch, now: now, managedAgents: identity.managedAgents)
        {
        case .canceled:
            record.cancelRequested = true
            finish(&record, .canceled, at: now)
            logger.info("dispatch canceled before launch", metadata: metadata)
        case .queueDeadlinePassed:
            finish(
                &record, .timedOut, at: now,
                errorSummary:
                    "The run was not started before its queue deadline (\(ISO8601.format(dispatch.queueDeadline))); the agent was never launched."
            )
            logger.warning("queue deadline passed; not launching", metadata: metadata)
        case .notManaged:
            finish(
                &record, .rejected, at: now,
                reason: "agent type \(dispatch.agentType.rawValue) is not managed by this host")
            logger.warning("agent type not managed here; rejected", metadata: metadata)
        case .launch:
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

    func cancelRun(_ cancel: RunCancel) async throws -> [FollowUp] {
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
        // Waiting for a slot: out of line now, and its supervisor ends it without launching.
        launchQueue.withdraw(cancel.runId)
        // Not launched yet (the supervisor sees the flag before launching) or being launched right
        // now (it sees the flag once the agent is registered).
        return []
    }
}
