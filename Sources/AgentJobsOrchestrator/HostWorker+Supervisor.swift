import AgentJobsCore
import AgentJobsLifecycle
import AgentJobsTelemetry
import Foundation
import Logging
import ServiceLifecycle
import Tracing

// MARK: Supervision

extension HostWorker {
    /// How ``launchAgent(_:_:traceParent:)`` ended.
    enum LaunchOutcome {
        /// Started, by the attempt sent at `at` (the run's start time).
        case launched(AgentHandle, at: Date)
        /// The orchestrator is stopping.
        case stopping
        /// A cancel was recorded while a transient failure was waited out.
        case canceled
        /// Launches failed with transient errors until the queue deadline; the last error.
        case queueDeadlinePassed(any Error)
        /// A launch failed for good.
        case failed(any Error)
    }

    /// The longest wait between two launch attempts after transient failures.
    static var launchRetryCeiling: Duration { .seconds(30) }

    /// Launches a run's agent. A launch that fails with a transient error
    /// (``OrchestratorError/isTransient``: the Docker daemon down or not answering, the host short of
    /// processes, memory or file descriptors) is tried again, 1 s later, then 2, 4, … up to
    /// ``launchRetryCeiling``, until the run's queue deadline, unless a cancel comes meanwhile.
    ///
    /// A retry cannot start the agent twice. A failed attempt may still have started it (a Docker
    /// start the daemon carried out but did not confirm in time), so each retry first asks the
    /// driver for the run's agent (``AgentDriver/agent(ofRun:)``) and adopts it when there is one;
    /// a container the attempt created and never started is removed first, and the process driver
    /// removes its record (and kills what it spawned) when its attempt fails. A retry whose lookup
    /// fails is not sent: it waits for the next turn.
    func launchAgent(_ dispatch: RunDispatch, _ directory: URL, traceParent: String?) async -> LaunchOutcome {
        var delay: Duration = .seconds(1)
        var attempt = 1
        var previousAttemptAt = clock()
        /// The agent a failed attempt started all the same, adopted; nil when there is none (or
        /// the driver cannot tell: a restart's reconcile then finds it). Asked before a retry, and
        /// before the run ends unlaunched (a cancel, the queue deadline), which would otherwise
        /// leave the agent running for a run recorded as never started.
        func startedAnyway() async throws -> LaunchOutcome? {
            guard let existing = try await driver.agent(ofRun: dispatch.runId) else { return nil }
            logger.info(
                "an earlier launch attempt started the agent; adopted", metadata: ["run_id": "\(dispatch.runId)"])
            HostMetrics.adopted()
            return .launched(existing, at: previousAttemptAt)
        }
        /// How the run ends when a cancel was recorded meanwhile; nil when none was.
        func endIfCanceled() async -> LaunchOutcome? {
            guard await journal.record(dispatch.runId)?.cancelRequested == true else { return nil }
            return (try? await startedAnyway()) ?? .canceled
        }
        while true {
            let attemptAt = clock()
            let launchStart = ContinuousClock.now
            let failure: any Error
            var launching = false
            do {
                if attempt > 1, let adopted = try await startedAnyway() { return adopted }
                launching = true
                // A span under the trace the dispatch carried (when tracing is on).
                let handle = try await withSpan(
                    "agentjobs.launch_agent", context: RunTracing.context(continuing: traceParent), ofKind: .consumer
                ) { span in
                    span.attributes["agentjobs.run_id"] = dispatch.runId
                    span.attributes["agentjobs.agent_type"] = dispatch.agentType.rawValue
                    return try await driver.launch(try makeLaunch(dispatch, directory))
                }
                HostMetrics.launched(after: ContinuousClock.now - launchStart)
                return .launched(handle, at: attemptAt)
            } catch {
                failure = error
            }
            if Task.isCancelled { return .stopping }
            if launching {
                HostMetrics.launchFailed()
                previousAttemptAt = attemptAt
            }
            guard !launching || (failure as? OrchestratorError)?.isTransient == true else { return .failed(failure) }
            if let canceled = await endIfCanceled() { return canceled }
            if clock().addingTimeInterval(delay.seconds) > dispatch.queueDeadline {
                return (try? await startedAnyway()) ?? .queueDeadlinePassed(failure)
            }
            logger.warning(
                "agent launch failed with a transient error; trying again",
                metadata: [
                    "run_id": "\(dispatch.runId)", "error": "\(failure)", "attempt": "\(attempt)",
                    "retry_in": "\(delay)",
                ])
            // Waited a second at a time, so that a cancel is answered within a second.
            let retryAt = ContinuousClock.now + delay
            while ContinuousClock.now < retryAt {
                do {
                    try await cancelWhenGracefulShutdown {
                        try await Task.sleep(for: min(.seconds(1), retryAt - ContinuousClock.now))
                    }
                } catch {
                    return .stopping
                }
                if Task.isShuttingDownGracefully { return .stopping }
                if let canceled = await endIfCanceled() { return canceled }
            }
            delay = min(delay * 2, Self.launchRetryCeiling)
            attempt += 1
        }
    }

    /// Launches (or re-attaches to) a run's agent, enforces its timeout and reports how it ended.
    func supervise(_ record: RunRecord, reattach: AgentHandle?) async {
        // The run's slot (or place in line) is given up however supervision ends.
        defer { launchQueue.release(record.runId) }
        guard let dispatch = record.dispatch else { return }
        var metadata: Logger.Metadata = ["run_id": "\(dispatch.runId)", "job_id": "\(dispatch.jobId)"]
        let directory = journal.directory(of: dispatch.runId)
        let handle: AgentHandle
        if let reattach {
            handle = reattach
        } else {
            // Stopping meanwhile: nothing is launched; the next start takes the run up (accepted).
            guard let turn = await waitForSlot(dispatch),
                let current = await journal.record(dispatch.runId), current.phase == .accepted
            else { return }
            if turn == .withdrawn {
                // Out of line without a slot: its cancel came, or its queue deadline passed.
                if current.cancelRequested {
                    await finishAndPublish(dispatch.runId, .canceled)
                } else {
                    await finishAndPublish(
                        dispatch.runId, .timedOut,
                        errorSummary:
                            "The run was not started before its queue deadline: the host was at its concurrency limit (AGENTJOBS_MAX_CONCURRENT_RUNS); the agent was never launched."
                    )
                }
                return
            }
            let now = clock()
            switch RunSupervision.admission(
                dispatch, cancelRequested: current.cancelRequested, now: now, managedAgents: nil)
            {
            case .canceled:
                await finishAndPublish(dispatch.runId, .canceled)
                return
            case .queueDeadlinePassed:
                await finishAndPublish(
                    dispatch.runId, .timedOut,
                    errorSummary: "The run was not started before its queue deadline; the agent was never launched.")
                return
            case .notManaged, .launch:
                break
            }
            // `accepted` (journaled by the intake) goes out while the agent starts; it is awaited
            // before the next journal change, so this run's events are never sent twice at once.
            async let acceptedPublished: Void = publish(dispatch.runId)
            let launched = await launchAgent(dispatch, directory, traceParent: record.traceParent)
            await acceptedPublished
            let launchedAt: Date
            switch launched {
            case .launched(let launchedHandle, let startedAt):
                handle = launchedHandle
                launchedAt = startedAt
            case .stopping:
                // The orchestrator is stopping mid-launch: nothing is known about the agent. The
                // restart's reconcile adopts it if the driver started it, or launches it.
                logger.info("orchestrator stopping during a launch; resumed on restart", metadata: metadata)
                return
            case .canceled:
                await finishAndPublish(dispatch.runId, .canceled)
                return
            case .queueDeadlinePassed(let error):
                await finishAndPublish(
                    dispatch.runId, .timedOut,
                    errorSummary:
                        "The run was not started before its queue deadline: every launch failed with a transient error, the last: \(error). The agent was never launched."
                )
                return
            case .failed(let error):
                logger.warning(
                    "agent could not be launched; rejected", metadata: metadata.merging(["error": "\(error)"]) { $1 })
                await finishAndPublish(dispatch.runId, .rejected, reason: "the agent could not be launched: \(error)")
                return
            }
            await recordLaunch(dispatch.runId, handle, at: launchedAt)
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
            logger.info(
                "orchestrator stopping; the agent keeps running and is re-attached on restart", metadata: metadata)
            return
        }
        let cancelRequested = await journal.record(dispatch.runId)?.cancelRequested ?? false
        let code = exit?.exitCode
        metadata["exit_code"] = "\(code.map(String.init) ?? "unknown")"
        switch RunSupervision.ending(
            cancelRequested: cancelRequested, stopSentForCancel: stoppedForCancel, timedOut: timedOut, exit: exit)
        {
        case .canceled:
            await finishAndPublish(dispatch.runId, .canceled, exitCode: code.map(Int.init))
        case .timedOut:
            let summary =
                "The run exceeded its timeout of \(dispatch.timeoutSeconds) s and was stopped.\n"
                + summarize(dispatch, directory, code)
            await finishAndPublish(dispatch.runId, .timedOut, exitCode: code.map(Int.init), errorSummary: summary)
        case .byExit:
            await finishByExit(dispatch, code)
        }
        await release(dispatch.runId, handle)
        logger.info("agent ended", metadata: metadata)
    }

    /// Waits until the run may launch under the concurrency limit: a slot frees, or its cancel or
    /// queue deadline comes first. Its `accepted` goes out before a wait, so the control plane
    /// knows the host has it.
    /// - Returns: `.launch` with a slot held, `.withdrawn` for a cancel or the deadline, nil when
    ///   the orchestrator is stopping (nothing may be launched then).
    func waitForSlot(_ dispatch: RunDispatch) async -> LaunchSlots.Turn? {
        guard launchQueue.mustWait(dispatch.runId) else {
            let turn = await launchQueue.turn(dispatch.runId)
            return Task.isCancelled ? nil : turn
        }
        await publish(dispatch.runId)
        logger.info(
            "host at its concurrency limit; the run waits for a slot",
            metadata: [
                "run_id": "\(dispatch.runId)", "limit": "\(launchQueue.limit.map(String.init) ?? "none")",
                "waiting": "\(launchQueue.waiting)",
            ])
        let turn = await withTaskGroup(of: LaunchSlots.Turn?.self) { group in
            group.addTask { await launchQueue.turn(dispatch.runId) }
            group.addTask {
                let remaining = dispatch.queueDeadline.timeIntervalSince(clock())
                try? await Task.sleep(for: .milliseconds(Int64(max(0, remaining) * 1000)))
                if !Task.isCancelled { launchQueue.withdraw(dispatch.runId) }
                return nil
            }
            var turn: LaunchSlots.Turn = .withdrawn
            while let next = await group.next() {
                if let next {
                    turn = next
                    break
                }
            }
            group.cancelAll()
            return turn
        }
        return Task.isCancelled ? nil : turn
    }

    /// Lets the driver forget an ended agent once its run's end is in the journal; until then the
    /// driver keeps it, so a restart learns how it ended. A failure is retried by the next start.
    func release(_ runId: String, _ handle: AgentHandle) async {
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
    func finishByExit(_ dispatch: RunDispatch, _ code: Int32?) async {
        if code == 0 {
            await finishAndPublish(dispatch.runId, .succeeded, exitCode: 0)
        } else {
            await finishAndPublish(
                dispatch.runId, .failed, exitCode: code.map(Int.init),
                errorSummary: summarize(dispatch, journal.directory(of: dispatch.runId), code))
        }
    }

    /// Journals that a run's agent is running (its handle, and the `started` event), then publishes.
    func recordLaunch(_ runId: String, _ handle: AgentHandle, at now: Date) async {
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
        let start = ContinuousClock.now
        do {
            let outcome = try await driver.stop(handle, grace: configuration.stopGrace)
            HostMetrics.stopTime.record(ContinuousClock.now - start)
            return outcome
        } catch {
            if Task.isCancelled {
                // The orchestrator is stopping: the stop is not known to have failed. The cancel or
                // timeout is in the journal, so the restarted orchestrator stops the agent again.
                logger.info(
                    "orchestrator stopping during an agent's stop; resumed on restart", metadata: ["run_id": "\(runId)"]
                )
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
}

/// The agents running right now, for cancels and timeouts: a ``RunSupervision/Agent`` per run.
actor ActiveAgents {
    private var agents: [String: RunSupervision.Agent<AgentHandle>] = [:]

    func register(_ runId: String, _ handle: AgentHandle) {
        agents[runId, default: .init()].register(handle)
        HostMetrics.agentsRunning.record(agents.count)
    }

    func markTimedOut(_ runId: String) { agents[runId]?.timeoutReached() }

    /// See ``RunSupervision/Agent/claimStopForCancel()``; `nil` for a run not registered.
    func claimCancelStop(_ runId: String) -> AgentHandle? { agents[runId]?.claimStopForCancel() }

    /// Forgets a run.
    /// - Returns: Whether its timeout fired, and whether a stop for a cancel was claimed.
    func unregister(_ runId: String) -> (timedOut: Bool, stoppedForCancel: Bool) {
        let agent = agents.removeValue(forKey: runId)
        HostMetrics.agentsRunning.record(agents.count)
        return (agent?.timeoutFired ?? false, agent?.stopClaimedForCancel ?? false)
    }
}
