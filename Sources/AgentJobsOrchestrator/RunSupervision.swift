import AgentJobsCore
import Foundation

/// The decisions of one run's life on this host, as values: whether a dispatch may launch, who
/// stops its agent for a cancel (exactly once), and how the run ends. ``HostWorker`` does the I/O
/// (journal, driver, transport) around them; the rules themselves are tested as values.
enum RunSupervision {
    /// What becomes of a dispatch when it is read (and again just before its launch).
    enum Admission: Equatable {
        /// Launch the agent.
        case launch
        /// A cancel for the run came first (in the same batch, or recorded before the launch).
        case canceled
        /// The queue deadline passed before the launch; the agent is never launched.
        case queueDeadlinePassed
        /// This host does not run agents of this type.
        case notManaged
    }

    /// - Parameters:
    ///   - cancelRequested: A cancel for the run was read (in the dispatch's batch, or journaled).
    ///   - managedAgents: The agent types this host runs; `nil` once the dispatch was accepted (the
    ///     check was made then).
    static func admission(
        _ dispatch: RunDispatch, cancelRequested: Bool, now: Date, managedAgents: [AgentType]?
    ) -> Admission {
        if cancelRequested { return .canceled }
        if now > dispatch.queueDeadline { return .queueDeadlinePassed }
        if let managedAgents, !managedAgents.contains(dispatch.agentType) { return .notManaged }
        return .launch
    }

    /// How a supervised run ends, once its agent is gone (or its end is unknown).
    enum Ending: Equatable {
        /// The cancel's stop ended the agent (or nothing is known of its end).
        case canceled
        /// The run timeout fired: the worker stopped the agent.
        case timedOut
        /// The agent ended on its own: `succeeded` on exit status 0, else `failed`.
        case byExit
    }

    /// - Parameters:
    ///   - cancelRequested: A cancel was recorded for the run.
    ///   - stopSentForCancel: A stop for that cancel was claimed (see ``Agent/claimStopForCancel()``).
    ///   - timedOut: The run timeout fired (in this process, or journaled before a restart).
    ///   - exit: How the agent ended, when known.
    static func ending(cancelRequested: Bool, stopSentForCancel: Bool, timedOut: Bool, exit: AgentExit?) -> Ending {
        // An agent that ended on its own (before the stop was sent, or ignoring its SIGTERM and
        // exiting with its own status within the grace) reports its own end, though the cancel
        // was recorded meanwhile.
        if cancelRequested && AgentExit.endsCanceled(exit, stopSentForCancel: stopSentForCancel) { return .canceled }
        if timedOut { return .timedOut }
        return .byExit
    }

    /// One run's agent while this host supervises it: who stops it for a cancel.
    ///
    /// A cancel and the agent's launch race: the intake journals the cancel and then asks for the
    /// agent's handle; the supervisor registers the handle and then looks at the journal. Whichever
    /// comes second finds the other's fact and stops the agent; ``claimStopForCancel()`` hands the
    /// handle out once, so the agent is stopped exactly once for the cancel, in either order.
    struct Agent<Handle> {
        private(set) var handle: Handle?
        private(set) var timeoutFired = false
        private(set) var stopClaimedForCancel = false

        init() {}

        /// The agent was launched or re-attached.
        mutating func register(_ handle: Handle) {
            self.handle = handle
        }

        mutating func timeoutReached() {
            timeoutFired = true
        }

        /// The handle to stop for a cancel: `nil` when the agent is not registered yet (the
        /// supervisor will claim it once it is) or the stop was already claimed.
        mutating func claimStopForCancel() -> Handle? {
            guard let handle, !stopClaimedForCancel else { return nil }
            stopClaimedForCancel = true
            return handle
        }
    }
}
