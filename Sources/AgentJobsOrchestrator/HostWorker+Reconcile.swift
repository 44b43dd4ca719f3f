import AgentJobsCore
import AgentJobsLifecycle
import Foundation
import Logging
import ServiceLifecycle

// MARK: Restart

extension HostWorker {
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
        let open = await journal.openRecords()
        // Events left over from before the stop, every run's at once: one transport round trip,
        // not one per run before the next is re-attached (20 runs took 1.2 s on the broker).
        await withTaskGroup(of: Void.self) { group in
            for record in open where !record.unpublished.isEmpty {
                group.addTask { await publish(record.runId) }
            }
        }
        for record in open {
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
}
