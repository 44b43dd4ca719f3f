import AgentJobsCore
import Foundation
import Testing

@testable import AgentJobsOrchestrator

/// The rules of one run's life on a host, as values: what HostWorker's comments used to argue.
@Suite("Run supervision rules (as values)")
struct RunSupervisionTests {
    typealias Agent = RunSupervision.Agent<String>

    let queuedAt = Date(timeIntervalSince1970: 1_800_000_000)

    func dispatch(agentType: AgentType = .datahealth) -> RunDispatch {
        RunDispatch(
            run: Run(
                id: "run_a", jobId: "job_a", jobName: "job", jobVersion: 1, hostId: "host_a", agentType: agentType,
                parameters: .file(fileName: "data.csv"), timeoutSeconds: 60, queueTimeoutSeconds: 600,
                trigger: .api, queuedAt: queuedAt))
    }

    @Test("a cancel before the launch wins over everything; then the queue deadline; then the host's agent types")
    func admission() {
        let dispatch = dispatch()
        let beforeDeadline = dispatch.queueDeadline.addingTimeInterval(-1)
        let afterDeadline = dispatch.queueDeadline.addingTimeInterval(1)
        #expect(
            RunSupervision.admission(dispatch, cancelRequested: true, now: afterDeadline, managedAgents: [])
                == .canceled)
        #expect(
            RunSupervision.admission(dispatch, cancelRequested: false, now: afterDeadline, managedAgents: [])
                == .queueDeadlinePassed)
        #expect(
            RunSupervision.admission(
                dispatch, cancelRequested: false, now: beforeDeadline, managedAgents: [.lineagePlus])
                == .notManaged)
        #expect(
            RunSupervision.admission(
                dispatch, cancelRequested: false, now: beforeDeadline, managedAgents: [.datahealth])
                == .launch)
        // Just before the launch the agent type was checked already at acceptance.
        #expect(
            RunSupervision.admission(dispatch, cancelRequested: false, now: beforeDeadline, managedAgents: nil)
                == .launch)
    }

    @Test("cancel first, launch second: the supervisor's claim after registering stops the agent, once")
    func cancelBeforeRegister() {
        var agent = Agent()
        #expect(agent.claimStopForCancel() == nil)  // the intake's claim: no agent yet
        agent.register("handle")
        #expect(agent.claimStopForCancel() == "handle")  // the supervisor's claim
        #expect(agent.claimStopForCancel() == nil)
        #expect(agent.stopClaimedForCancel)
    }

    @Test("launch first, cancel second: the intake's claim stops the agent and the supervisor's finds it taken")
    func registerBeforeCancel() {
        var agent = Agent()
        agent.register("handle")
        #expect(agent.claimStopForCancel() == "handle")  // the intake's claim
        #expect(agent.claimStopForCancel() == nil)  // a repeated cancel, or the supervisor's claim
    }

    @Test("a run with a cancel ends canceled only when the cancel's stop ended its agent, or its end is unknown")
    func endingWithCancel() {
        let stopped = AgentExit(exitCode: 143, signal: 15)
        let ownExit = AgentExit(exitCode: 3)
        #expect(
            RunSupervision.ending(cancelRequested: true, stopSentForCancel: true, timedOut: false, exit: stopped)
                == .canceled)
        #expect(
            RunSupervision.ending(cancelRequested: true, stopSentForCancel: false, timedOut: false, exit: nil)
                == .canceled)
        // Ended on its own before the stop was sent, or ignored SIGTERM and exited with its status.
        #expect(
            RunSupervision.ending(cancelRequested: true, stopSentForCancel: false, timedOut: false, exit: stopped)
                == .byExit)
        #expect(
            RunSupervision.ending(cancelRequested: true, stopSentForCancel: true, timedOut: false, exit: ownExit)
                == .byExit)
        // The timeout's stop ended it though a cancel was recorded without a stop of its own.
        #expect(
            RunSupervision.ending(cancelRequested: true, stopSentForCancel: false, timedOut: true, exit: stopped)
                == .timedOut)
    }

    @Test("without a cancel a run ends timed out when its timeout fired, else by its exit")
    func endingWithoutCancel() {
        #expect(
            RunSupervision.ending(
                cancelRequested: false, stopSentForCancel: false, timedOut: true, exit: AgentExit(exitCode: 0))
                == .timedOut)
        #expect(
            RunSupervision.ending(
                cancelRequested: false, stopSentForCancel: false, timedOut: false, exit: AgentExit(exitCode: 0))
                == .byExit)
        #expect(
            RunSupervision.ending(cancelRequested: false, stopSentForCancel: false, timedOut: false, exit: nil)
                == .byExit)
    }
}
