import AgentJobsCore
import Foundation
import Testing

@Suite("Run lifecycle state machine")
struct RunStateMachineTests {
    /// The whole transition table: every (state, event) pair and what it must do.
    static let table: [(RunStatus, RunEventKind, RunStatus?)] =
        [
            (.queued, .start, .running),
            (.queued, .succeed, nil),
            (.queued, .fail, .failed),
            (.queued, .timeOut, .timedOut),
            (.queued, .cancel, .canceled),
            (.running, .start, nil),
            (.running, .succeed, .succeeded),
            (.running, .fail, .failed),
            (.running, .timeOut, .timedOut),
            (.running, .cancel, .canceled),
        ]
        + [RunStatus.succeeded, .failed, .timedOut, .canceled].flatMap { terminal in
            RunEventKind.allCases.map { (terminal, $0, nil) }
        }

    @Test("the table covers every (state, event) pair")
    func tableIsComplete() {
        #expect(Self.table.count == RunStatus.allCases.count * RunEventKind.allCases.count)
        for status in RunStatus.allCases {
            for event in RunEventKind.allCases {
                #expect(Self.table.contains { $0.0 == status && $0.1 == event }, "missing \(status) + \(event)")
            }
        }
    }

    @Test("each (state, event) pair moves or is ignored as the lifecycle says", arguments: table.indices)
    func transition(index: Int) {
        let (status, event, expected) = Self.table[index]
        switch status.transition(on: event) {
        case .move(let next):
            #expect(next == expected, "\(status) + \(event) moved to \(next)")
        case .ignore:
            #expect(
                expected == nil, "\(status) + \(event) was ignored but should move to \(String(describing: expected))")
        }
    }

    @Test("terminal states are final: no event moves them")
    func terminalStatesAreFinal() {
        for status in RunStatus.allCases where status.isTerminal {
            for event in RunEventKind.allCases {
                guard case .ignore = status.transition(on: event) else {
                    Issue.record("\(status) moved on \(event)")
                    continue
                }
            }
        }
    }

    static func sampleRun() -> Run {
        Run(
            id: "run_1", jobId: "job_1", jobName: "j", jobVersion: 1, hostId: "host_1", agentType: .datahealth,
            parameters: .file(fileName: "f"), timeoutSeconds: 60, queueTimeoutSeconds: 60, trigger: .manual,
            queuedAt: Date(timeIntervalSince1970: 1000))
    }

    @Test("duplicated and replayed events change nothing the second time")
    func duplicatesAreIdempotent() {
        var run = Self.sampleRun()
        let start = RunEvent.started(at: Date(timeIntervalSince1970: 1001))
        let finish = RunEvent.failed(at: Date(timeIntervalSince1970: 1003), exitCode: 2, errorSummary: "boom")
        let outcomes = [run.apply(start), run.apply(start), run.apply(finish)]
        #expect(outcomes == [true, false, true])
        let afterFirst = run
        let replays = [
            run.apply(finish), run.apply(start),
            run.apply(.succeeded(at: Date(timeIntervalSince1970: 1004), exitCode: 0)),
        ]
        #expect(replays == [false, false, false])
        #expect(run == afterFirst)
        #expect(run.status == .failed)
        #expect(run.exitCode == 2)
        #expect(run.durationMs == 2000)
    }

    @Test("a success that arrives before its start records the start and never skips running")
    func lateStartIsImplied() {
        var run = Self.sampleRun()
        let at = Date(timeIntervalSince1970: 1005)
        let applied = run.apply(.succeeded(at: at, exitCode: 0))
        #expect(applied)
        #expect(run.status == .succeeded)
        #expect(run.startedAt == at)
        let late = run.apply(.started(at: Date(timeIntervalSince1970: 1001)))
        #expect(!late)
        #expect(run.startedAt == at)
    }

    @Test("error summaries stored on a run are capped at 4096 bytes")
    func summariesAreCapped() {
        var run = Self.sampleRun()
        run.apply(.timedOut(at: Date(timeIntervalSince1970: 2000), errorSummary: String(repeating: "é", count: 5000)))
        #expect(run.status == .timedOut)
        #expect((run.errorSummary?.utf8.count ?? 0) <= ErrorSummary.maxBytes)
    }
}
