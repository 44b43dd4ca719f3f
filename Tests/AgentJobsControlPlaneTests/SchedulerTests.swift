import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsStore
import Foundation
import Logging
import Testing

/// Scheduler behaviour on a simulated clock: each pass is `tick(now:)` at a chosen instant; nothing sleeps.
@Suite("Scheduler")
struct SchedulerTests {
    /// 2026-03-02 00:00:00 UTC, a Monday.
    static let t0 = Date(timeIntervalSince1970: 1_772_409_600)

    struct Setup {
        let fixture: APIFixture
        let scheduler: Scheduler
        var store: SQLiteStore { fixture.store }

        static func make() async throws -> Setup {
            let fixture = try await APIFixture.make()
            return Setup(fixture: fixture, scheduler: Scheduler(store: fixture.store, logger: Logger(label: "test")))
        }

        func job(cron: String, policy: MissedPolicy = .latest, window: Int = 3600, jitter: Int = 0, at now: Date = t0)
            async throws -> Job
        {
            try await store.createJob(
                JobDefinition(
                    name: "scheduled", hostId: fixture.hostId, agentType: .datahealth, parameters: .file(fileName: "f"),
                    schedule: JobSchedule(
                        cron: cron, missedPolicy: policy, catchUpWindowSeconds: window, jitterSeconds: jitter)),
                now: now)
        }

        /// Ends a run the way the aggregator will (here: cancel of an unsent dispatch).
        func finish(_ runId: String?) async throws {
            guard let runId else { return }
            _ = try await store.requestCancel(runId: runId, now: t0)
        }

        func occurrences(_ job: Job) async throws -> [ScheduleOccurrence] {
            try await store.scheduleOccurrences(jobId: job.id, limit: 500).reversed()
        }
    }

    func minutes(_ count: Double) -> TimeInterval { count * 60 }
    func hours(_ count: Double) -> TimeInterval { count * 3600 }

    @Test("an occurrence fires once, as a schedule-triggered run that records its scheduled time")
    func firesOnce() async throws {
        let setup = try await Setup.make()
        let job = try await setup.job(cron: "*/5 * * * *")
        #expect(try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(minutes(4))).isEmpty)
        let fired = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(minutes(5) + 0.4))
        #expect(fired.map(\.outcome) == [.started])
        #expect(fired.first?.scheduledAt == Self.t0.addingTimeInterval(minutes(5)))
        let run = try #require(try await setup.store.run(id: fired.first?.runId ?? ""))
        #expect(run.trigger == .schedule)
        #expect(run.triggeredBy == .schedule)
        #expect(run.scheduledAt == Self.t0.addingTimeInterval(minutes(5)))
        // The same instant again, and a moment later: nothing more.
        #expect(try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(minutes(5) + 0.4)).isEmpty)
        #expect(try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(minutes(6))).isEmpty)
        #expect(
            try await setup.store.job(id: job.id)?.scheduleState?.nextOccurrence
                == Self.t0.addingTimeInterval(minutes(10)))
        await setup.fixture.cleanup()
    }

    @Test("an occurrence that finds the previous run active is skipped with that run's id")
    func overlapIsSkipped() async throws {
        let setup = try await Setup.make()
        let job = try await setup.job(cron: "*/5 * * * *")
        let first = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(minutes(5)))
        let runId = try #require(first.first?.runId)
        let second = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(minutes(10)))
        #expect(second.map(\.outcome) == [.skipped])
        #expect(second.first?.activeRunId == runId)
        try await setup.finish(runId)
        let third = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(minutes(15)))
        #expect(third.map(\.outcome) == [.started])
        #expect(try await setup.occurrences(job).map(\.outcome) == [.started, .skipped, .started])
        await setup.fixture.cleanup()
    }

    @Test("after 5 hours down, policy latest starts one catch-up run within the window and records the rest missed")
    func downtimeLatest() async throws {
        let setup = try await Setup.make()
        let job = try await setup.job(cron: "0 * * * *", policy: .latest, window: 3600)
        // Down from t0 until 5h30m later: occurrences at 1h..5h were not fired.
        let recorded = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(hours(5.5)))
        #expect(recorded.map(\.outcome) == [.missed, .missed, .missed, .missed, .started])
        #expect(recorded.map(\.scheduledAt) == (1...5).map { Self.t0.addingTimeInterval(hours(Double($0))) })
        #expect(recorded.last?.reason?.contains("catch-up") == true)
        #expect(
            try await setup.store.job(id: job.id)?.scheduleState?.nextOccurrence == Self.t0.addingTimeInterval(hours(6))
        )
        await setup.fixture.cleanup()
    }

    @Test("after 5 hours down, a catch-up outside the window is not started")
    func downtimeLatestOutsideWindow() async throws {
        let setup = try await Setup.make()
        _ = try await setup.job(cron: "0 * * * *", policy: .latest, window: 600)
        let recorded = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(hours(5.5)))
        #expect(recorded.map(\.outcome) == Array(repeating: .missed, count: 5))
        await setup.fixture.cleanup()
    }

    @Test("after 5 hours down, policy skip records every missed occurrence and starts nothing")
    func downtimeSkip() async throws {
        let setup = try await Setup.make()
        _ = try await setup.job(cron: "0 * * * *", policy: .skip)
        let recorded = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(hours(5.5)))
        #expect(recorded.map(\.outcome) == Array(repeating: .missed, count: 5))
        #expect(try await setup.store.listRuns(RunFilter(), cursor: nil, limit: 50).runs.isEmpty)
        await setup.fixture.cleanup()
    }

    @Test("coming back just as an occurrence is due fires it on time and records the older ones missed")
    func downtimeEndingOnTime() async throws {
        let setup = try await Setup.make()
        _ = try await setup.job(cron: "0 * * * *", policy: .latest)
        let recorded = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(hours(5) + 10))
        #expect(recorded.map(\.outcome) == [.missed, .missed, .missed, .missed, .started])
        #expect(recorded.last?.reason == nil)
        await setup.fixture.cleanup()
    }

    @Test("a paused schedule fires nothing; on resume its missed occurrences follow the policy")
    func pauseAndResume() async throws {
        let setup = try await Setup.make()
        let job = try await setup.job(cron: "0 * * * *")
        var definition = JobDefinition(job)
        definition.schedule?.paused = true
        let paused = try await setup.store.updateJob(
            id: job.id, expectedVersion: 1, definition: definition, now: Self.t0)
        #expect(try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(hours(3.25))).isEmpty)
        definition.schedule?.paused = false
        _ = try await setup.store.updateJob(
            id: job.id, expectedVersion: paused.version, definition: definition,
            now: Self.t0.addingTimeInterval(hours(3.25)))
        let recorded = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(hours(3.25)))
        #expect(recorded.map(\.outcome) == [.missed, .missed, .started])
        await setup.fixture.cleanup()
    }

    @Test("a new cron takes effect from the next occurrence; deleting the job stops its schedule")
    func editAndDelete() async throws {
        let setup = try await Setup.make()
        let job = try await setup.job(cron: "0 * * * *")
        var definition = JobDefinition(job)
        definition.schedule?.cron = "30 * * * *"
        _ = try await setup.store.updateJob(
            id: job.id, expectedVersion: 1, definition: definition, now: Self.t0.addingTimeInterval(minutes(10)))
        #expect(
            try await setup.store.job(id: job.id)?.scheduleState?.nextOccurrence
                == Self.t0.addingTimeInterval(minutes(30)))
        let fired = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(minutes(30)))
        #expect(fired.map(\.scheduledAt) == [Self.t0.addingTimeInterval(minutes(30))])
        try await setup.finish(fired.first?.runId)
        try await setup.store.deleteJob(id: job.id)
        #expect(try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(hours(5))).isEmpty)
        await setup.fixture.cleanup()
    }

    @Test("jitter delays each occurrence by a fixed per-job offset within the bound")
    func jitter() async throws {
        let setup = try await Setup.make()
        let job = try await setup.job(cron: "0 * * * *", jitter: 600)
        let offset = SchedulePlanner.jitter(jobId: job.id, maxSeconds: 600)
        #expect((0...600).contains(offset))
        #expect(
            try await setup.store.job(id: job.id)?.scheduleState?.dueAt == Self.t0.addingTimeInterval(hours(1) + offset)
        )
        if offset > 0 {
            #expect(try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(hours(1) + offset - 1)).isEmpty)
        }
        let fired = try await setup.scheduler.tick(now: Self.t0.addingTimeInterval(hours(1) + offset))
        #expect(fired.map(\.outcome) == [.started])
        #expect(fired.first?.scheduledAt == Self.t0.addingTimeInterval(hours(1)))
        await setup.fixture.cleanup()
    }

    @Test("two schedulers on one database (separate connections) start exactly one run per occurrence")
    func twoReplicas() async throws {
        let setup = try await Setup.make()
        var jobs: [Job] = []
        for _ in 0..<40 { jobs.append(try await setup.job(cron: "*/10 * * * *")) }
        let replica = try SQLiteStore(path: setup.store.path)
        let other = Scheduler(store: replica, logger: Logger(label: "replica"))
        for step in 1...3 {
            let now = Self.t0.addingTimeInterval(minutes(Double(step * 10)))
            async let a = setup.scheduler.tick(now: now)
            async let b = other.tick(now: now)
            let (left, right) = try await (a, b)
            #expect(left.count + right.count == jobs.count, "step \(step)")
            for run in try await setup.store.listRuns(RunFilter(status: .queued), cursor: nil, limit: 500).runs {
                try await setup.finish(run.id)
            }
        }
        let runs = try await setup.store.listRuns(RunFilter(), cursor: nil, limit: 500).runs
        #expect(runs.count == jobs.count * 3)
        let pairs = Set(runs.map { "\($0.jobId)@\($0.scheduledAt?.timeIntervalSince1970 ?? 0)" })
        #expect(pairs.count == runs.count)
        await replica.close()
        await setup.fixture.cleanup()
    }
}
