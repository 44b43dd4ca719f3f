import AgentJobsCore
import Foundation
import Testing

/// The acceptance rule every store applies to a host's run event, as values.
@Suite("Run event outcome (as values)")
struct RunEventOutcomeTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func run(status: RunStatus = .queued, startedAt: Date? = nil, epoch: Int = 2) -> Run {
        Run(
            id: "run_a", jobId: "job_a", jobName: "job", jobVersion: 1, hostId: "host_a", agentType: .datahealth,
            parameters: .file(fileName: "f.csv"), timeoutSeconds: 60, queueTimeoutSeconds: 600, status: status,
            trigger: .api, queuedAt: t0, startedAt: startedAt, dispatchEpoch: epoch)
    }

    func event(_ type: RunEventType, host: String = "host_a", epoch: Int = 2, exitCode: Int? = nil) -> RunLifecycleEvent
    {
        RunLifecycleEvent(
            type: type, runId: "run_a", jobId: "job_a", hostId: host, dispatchEpoch: epoch, sequence: 1,
            at: t0.addingTimeInterval(5), exitCode: exitCode)
    }

    @Test("an event is refused for an unknown run, another host's run, or an earlier dispatch epoch")
    func refusals() {
        #expect(event(.started).outcome(on: nil) == .unknownRun)
        #expect(event(.started, host: "host_b").outcome(on: run()) == .wrongHost(expected: "host_a"))
        guard case .ignored(let unchanged, let reason) = event(.started, epoch: 1).outcome(on: run()) else {
            Issue.record("an event of an earlier dispatch must be ignored")
            return
        }
        #expect(unchanged == run())
        #expect(reason.contains("epoch 1"))
    }

    @Test("accepted changes no status; started and succeeded move it; a late failure after success is ignored")
    func transitions() {
        guard case .ignored = event(.accepted).outcome(on: run()) else {
            Issue.record("accepted must change no status")
            return
        }
        guard case .applied(let running) = event(.started).outcome(on: run()) else {
            Issue.record("started must apply to a queued run")
            return
        }
        #expect(running.status == .running && running.startedAt == t0.addingTimeInterval(5))
        guard case .applied(let succeeded) = event(.succeeded, exitCode: 0).outcome(on: running) else {
            Issue.record("succeeded must apply to a running run")
            return
        }
        #expect(succeeded.status == .succeeded)
        guard case .ignored(let still, _) = event(.failed, exitCode: 9).outcome(on: succeeded) else {
            Issue.record("a finished run must not change")
            return
        }
        #expect(still == succeeded)
    }

    @Test("a start reported for a run closed before it started asks the host to stop; a replayed start does not")
    func startAfterClose() {
        let canceledWhileQueued = run(status: .canceled)
        #expect(event(.started).outcome(on: canceledWhileQueued) == .stopRequested(canceledWhileQueued))
        let finished = run(status: .succeeded, startedAt: t0)
        guard case .ignored = event(.started).outcome(on: finished) else {
            Issue.record("a replayed start of a finished run must be ignored")
            return
        }
    }

    @Test(
        "a cancel withdraws a queued run's unsent dispatch, only records the request for a running run, and is refused once the run ended"
    )
    func cancelRule() {
        #expect(run().cancelDecision == .request(withdrawDispatch: true))
        #expect(run(status: .running, startedAt: t0).cancelDecision == .request(withdrawDispatch: false))
        #expect(run(status: .succeeded, startedAt: t0).cancelDecision == .alreadyEnded)
        let now = t0.addingTimeInterval(9)
        let withdrawn = run().cancelRequested(at: now, dispatchWithdrawn: true)
        #expect(withdrawn.status == .canceled && withdrawn.finishedAt == now && withdrawn.cancelRequestedAt == now)
        #expect(withdrawn.cancelDecision == .alreadyEnded)
        let requested = run().cancelRequested(at: now, dispatchWithdrawn: false)
        #expect(requested.status == .queued && requested.finishedAt == nil && requested.cancelRequestedAt == now)
        #expect(requested.cancelDecision == .alreadyRequested)
    }
}
