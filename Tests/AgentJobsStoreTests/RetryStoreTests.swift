import AgentJobsCore
import AgentJobsStore
import Foundation
import Testing

@Suite("Store conformance: retries")
struct RetryStoreTests {
    static let policy = RetryPolicy(maxAttempts: 3, initialDelaySeconds: 10, backoffFactor: 3, maxDelaySeconds: 3600)

    static func job(_ fixture: Fixture, retry: RetryPolicy? = policy, name: String = "nightly") async throws -> Job {
        try await fixture.store.createJob(
            JobDefinition(
                name: name, hostId: fixture.host.id, agentType: .datahealth, parameters: .file(fileName: "checks.yaml"),
                retry: retry), now: fixture.now)
    }

    /// Starts `run` and ends it with `type` (`failed`, `timed_out`, `rejected`, ...) at `now`, the
    /// agent's exit seen by the host (an exit code) unless `lostTrack`.
    static func end(_ run: Run, _ type: RunEventType, _ store: any Store, now: Date, lostTrack: Bool = false)
        async throws
    {
        var events = [RunEventStoreTests.event(.started, run, sequence: 1, at: now)]
        if type == .rejected { events = [] }
        let exitCode: Int? =
            lostTrack ? nil : [RunEventType.failed: 3, .timedOut: 143, .succeeded: 0, .canceled: 143][type]
        events.append(
            RunLifecycleEvent(
                type: type, runId: run.id, jobId: run.jobId, hostId: run.hostId, dispatchEpoch: run.dispatchEpoch,
                sequence: 2, at: now, exitCode: exitCode, errorSummary: type == .failed ? "conn-a: boom" : nil))
        _ = try await store.applyRunEvents(events, now: now)
    }

    static func runs(of job: Job, _ store: any Store) async throws -> [Run] {
        try await store.listRuns(RunFilter(jobId: job.id), cursor: nil, limit: 100).runs.reversed()
    }

    static func dispatches(of run: Run, _ store: any Store) async throws -> Int {
        try await store.pendingOutbox(limit: 10_000).count { $0.runId == run.id && $0.type == RunDispatch.type }
    }

    @Test(
        "a failed attempt writes its retry with the end, held for its delay, dispatched once when due; the chain stops at maxAttempts",
        arguments: StoreKind.allCases)
    func chain(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await Self.job(fixture)
        let t = fixture.now
        let requester = RunRequester(kind: .token, id: "tok_1", name: "ops")
        let first = try await store.triggerRun(
            jobId: job.id, trigger: .manual, scheduledAt: nil, rerunOf: nil, triggeredBy: requester, now: t,
            traceParent: nil)
        #expect(first.attempt == 1)
        #expect(first.retryPolicy == Self.policy)
        // The job's policy changes after the first attempt: the chain keeps the one it started with.
        var edited = JobDefinition(job)
        edited.retry = RetryPolicy(maxAttempts: 10, initialDelaySeconds: 1)
        _ = try await store.updateJob(id: job.id, expectedVersion: 1, definition: edited, now: t)

        try await Self.end(first, .failed, store, now: t.addingTimeInterval(5))
        let second = try #require(try await Self.runs(of: job, store).last)
        #expect(second.id != first.id)
        #expect(second.attempt == 2)
        #expect(second.retryOf == first.id)
        #expect(second.status == .queued)
        #expect(second.heldUntil == t.addingTimeInterval(15))
        #expect(second.queuedAt == t.addingTimeInterval(15))
        #expect(second.trigger == .manual)
        #expect(second.triggeredBy == requester)
        #expect(second.jobVersion == 1)
        #expect(second.retryPolicy == Self.policy)
        // A held retry is the job's active run, and nothing of it has left the control plane.
        await #expect(throws: StoreError.self) {
            _ = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: t)
        }
        do {
            _ = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: t)
        } catch let error as StoreError {
            #expect(error.activeRunId == second.id)
        }
        #expect(try await Self.dispatches(of: second, store) == 0)
        // A repeated end changes nothing: no second retry.
        try await Self.end(first, .failed, store, now: t.addingTimeInterval(6))
        #expect(try await Self.runs(of: job, store).count == 2)

        #expect(try await store.releaseHeldRuns(now: t.addingTimeInterval(14.9), limit: 100).isEmpty)
        let released = try await store.releaseHeldRuns(now: t.addingTimeInterval(15), limit: 100)
        #expect(released.map(\.id) == [second.id])
        #expect(released.first?.heldUntil == nil)
        #expect(try await store.releaseHeldRuns(now: t.addingTimeInterval(16), limit: 100).isEmpty)
        #expect(try await Self.dispatches(of: second, store) == 1)
        #expect(try await store.run(id: second.id)?.heldUntil == nil)

        // The delay grows by the factor: 10 s, then 30 s.
        try await Self.end(second, .timedOut, store, now: t.addingTimeInterval(20))
        let third = try #require(try await Self.runs(of: job, store).last)
        #expect(third.attempt == 3)
        #expect(third.retryOf == second.id)
        #expect(third.heldUntil == t.addingTimeInterval(50))
        _ = try await store.releaseHeldRuns(now: t.addingTimeInterval(50), limit: 100)
        try await Self.end(third, .failed, store, now: t.addingTimeInterval(60))
        let all = try await Self.runs(of: job, store)
        #expect(all.map(\.attempt) == [1, 2, 3])
        #expect(all.map(\.status) == [.failed, .timedOut, .failed])
        #expect(try await store.releaseHeldRuns(now: t.addingTimeInterval(10_000), limit: 100).isEmpty)
        // The chain is over: the job can run again.
        let next = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: t)
        #expect(next.attempt == 1)
        #expect(next.retryPolicy == edited.retry)
    }

    @Test(
        "never retried: a success, a cancel, a rejected dispatch, a run someone asked to cancel, an end the policy does not name, a job without a policy",
        arguments: StoreKind.allCases)
    func notRetried(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let t = fixture.now
        let onlyFailed = RetryPolicy(maxAttempts: 3, on: [.failed])
        let cases: [(name: String, policy: RetryPolicy?, end: RunEventType, cancelFirst: Bool)] = [
            ("succeeded", Self.policy, .succeeded, false), ("canceled", Self.policy, .canceled, false),
            ("rejected", Self.policy, .rejected, false), ("cancel requested", Self.policy, .failed, true),
            ("timed out, retried on failed only", onlyFailed, .timedOut, false), ("no policy", nil, .failed, false),
            ("lost track of the agent", Self.policy, .failed, false),
        ]
        for item in cases {
            let job = try await Self.job(fixture, retry: item.policy, name: item.name)
            let run = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: t)
            if item.cancelFirst {
                _ = try await store.applyRunEvents(
                    [RunEventStoreTests.event(.started, run, sequence: 1, at: t)], now: t)
                _ = try await store.requestCancel(runId: run.id, now: t)
            }
            try await Self.end(
                run, item.end, store, now: t.addingTimeInterval(1), lostTrack: item.name == "lost track of the agent")
            let runs = try await Self.runs(of: job, store)
            #expect(runs.count == 1, "\(item.name): \(runs.map(\.status))")
            #expect(runs.first?.status.isTerminal == true, "\(item.name)")
        }
    }

    @Test(
        "canceling a held retry cancels it at once, sends the host nothing and ends the chain",
        arguments: StoreKind.allCases)
    func cancelHeld(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await Self.job(fixture)
        let t = fixture.now
        let first = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: t)
        try await Self.end(first, .failed, store, now: t)
        let held = try #require(try await Self.runs(of: job, store).last)
        let before = try await store.pendingOutbox(limit: 10_000).count
        guard case .canceled(let canceled) = try await store.requestCancel(runId: held.id, now: t) else {
            Issue.record("a held retry should be canceled at once")
            return
        }
        #expect(canceled.status == .canceled)
        #expect(canceled.heldUntil == nil)
        let stored = try #require(try await store.run(id: held.id))
        #expect(stored.status == .canceled)
        #expect(stored.heldUntil == nil)
        #expect(try await store.pendingOutbox(limit: 10_000).count == before, "a cancel went out for a held retry")
        #expect(try await store.releaseHeldRuns(now: t.addingTimeInterval(3600), limit: 100).isEmpty)
        #expect(try await Self.runs(of: job, store).count == 2)
    }

    @Test(
        "a scheduled run's retry carries its occurrence: the chain is one occurrence, and the next one is skipped while it is pending",
        arguments: StoreKind.allCases)
    func scheduledChain(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await store.createJob(
            JobDefinition(
                name: "hourly", hostId: fixture.host.id, agentType: .datahealth, parameters: .file(fileName: "c"),
                schedule: JobSchedule(cron: "0 * * * *"), retry: Self.policy), now: fixture.now)
        let t = fixture.now
        let occurrence = t.addingTimeInterval(-60)
        let first = try await store.triggerRun(
            jobId: job.id, trigger: .schedule, scheduledAt: occurrence, rerunOf: nil, triggeredBy: .schedule, now: t,
            traceParent: nil)
        try await Self.end(first, .failed, store, now: t)
        let retry = try #require(try await Self.runs(of: job, store).last)
        #expect(retry.attempt == 2)
        #expect(retry.scheduledAt == occurrence)
        #expect(retry.trigger == .schedule)
        // The occurrence is not started twice, retries or not.
        await #expect(throws: StoreError.self) {
            _ = try await store.triggerRun(jobId: job.id, trigger: .schedule, scheduledAt: occurrence, now: t)
        }
        // A timed-out held retry (a control plane down past its queue deadline) leaves nothing to release.
        let expired = try await store.closeRunsOfOfflineHosts(
            [fixture.host.id: t], lost: [], now: retry.queueDeadline.addingTimeInterval(1))
        #expect(expired.timedOut.map(\.id) == [retry.id])
        #expect(try await store.run(id: retry.id)?.heldUntil == nil)
        let third = try #require(try await Self.runs(of: job, store).last)
        #expect(third.attempt == 3)
        #expect(third.scheduledAt == occurrence)
    }

    @Test(
        "runs host tracking closes are not retried (a host only unreachable may have launched them); only a held retry is",
        arguments: StoreKind.allCases)
    func offlineHost(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let t = fixture.now
        let queuedJob = try await Self.job(fixture, name: "queued")
        let queued = try await store.triggerRun(jobId: queuedJob.id, trigger: .api, scheduledAt: nil, now: t)
        let runningJob = try await Self.job(fixture, name: "running")
        let running = try await store.triggerRun(jobId: runningJob.id, trigger: .api, scheduledAt: nil, now: t)
        _ = try await store.applyRunEvents([RunEventStoreTests.event(.started, running, sequence: 1, at: t)], now: t)
        let late = queued.queueDeadline.addingTimeInterval(1)
        let expired = try await store.closeRunsOfOfflineHosts([fixture.host.id: t], lost: [fixture.host.id], now: late)
        #expect(expired.timedOut.map(\.id) == [queued.id])
        #expect(expired.lost.map(\.id) == [running.id])
        #expect(try await Self.runs(of: queuedJob, store).count == 1)
        #expect(try await Self.runs(of: runningJob, store).count == 1)
    }
}
