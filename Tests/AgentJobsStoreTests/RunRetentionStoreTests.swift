import AgentJobsCore
import AgentJobsStore
import Foundation
import Testing

@Suite("Store conformance: run retention")
struct RunRetentionStoreTests {
    static let day: TimeInterval = 24 * 3600

    /// Triggers a run of `job` at `queuedAt` and ends it (started, succeeded) at `endedAt` by the host's clock.
    static func endedRun(_ job: Job, _ store: any Store, queuedAt: Date, endedAt: Date) async throws -> Run {
        let run = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: queuedAt)
        _ = try await store.applyRunEvents(
            [
                RunEventStoreTests.event(.started, run, sequence: 1, at: endedAt),
                RunEventStoreTests.event(.succeeded, run, sequence: 2, at: endedAt),
            ], now: endedAt)
        #expect(try await store.run(id: run.id)?.status == .succeeded)
        return run
    }

    /// Every batch of one pass, `limit` runs looked at per batch.
    static func pass(_ store: any Store, before cutoff: Date, keep: Int, limit: Int) async throws -> (Int, Int) {
        var deleted = 0
        var batches = 0
        var cursor: RunRetentionCursor?
        repeat {
            let batch = try await store.deleteEndedRuns(before: cutoff, keepPerJob: keep, after: cursor, limit: limit)
            deleted += batch.deleted
            batches += 1
            cursor = batch.next
        } while cursor != nil && batches < 100
        return (deleted, batches)
    }

    @Test(
        "ended runs past the cutoff go in batches, except their job's newest, active runs, and runs queued since",
        arguments: StoreKind.allCases)
    func deletesEndedRuns(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let t = fixture.now
        let kept = try await fixture.job("kept")
        var keptRuns: [Run] = []
        for index in 0..<5 {
            let queued = t.addingTimeInterval(Double(index) * 60)
            keptRuns.append(
                try await Self.endedRun(kept, store, queuedAt: queued, endedAt: queued.addingTimeInterval(5)))
        }
        // Still queued, from long ago: never deleted, and counts among its job's newest.
        let active = try await store.triggerRun(
            jobId: kept.id, trigger: .api, scheduledAt: nil, now: t.addingTimeInterval(600))
        let deleted = try await fixture.job("deleted")
        let orphans = [
            try await Self.endedRun(deleted, store, queuedAt: t, endedAt: t.addingTimeInterval(1)),
            try await Self.endedRun(
                deleted, store, queuedAt: t.addingTimeInterval(2), endedAt: t.addingTimeInterval(3)),
        ]
        try await store.deleteJob(id: deleted.id)
        // Queued after the cutoff by the control plane's clock, ended "long ago" by a host whose
        // clock runs 100 days late: kept.
        let skewed = try await fixture.job("skewed")
        let late = try await Self.endedRun(
            skewed, store, queuedAt: t.addingTimeInterval(100 * Self.day), endedAt: t.addingTimeInterval(60))

        let cutoff = t.addingTimeInterval(10 * Self.day)
        let (count, batches) = try await Self.pass(store, before: cutoff, keep: 2, limit: 3)
        #expect(count == 6)
        #expect(batches == 3)  // 8 runs queued before the cutoff, 3 per batch
        for run in keptRuns.prefix(4) + orphans { #expect(try await store.run(id: run.id) == nil) }
        #expect(try await store.run(id: keptRuns[4].id) != nil)
        #expect(try await store.run(id: active.id)?.status == .queued)
        #expect(try await store.run(id: late.id) != nil)
        let listed = try await store.listRuns(RunFilter(jobId: kept.id), cursor: nil, limit: 10).runs.map(\.id)
        #expect(listed == [active.id, keptRuns[4].id])  // the two newest, one of them active

        // Nothing more is due; the cutoff before the runs ended deletes nothing.
        #expect(try await Self.pass(store, before: cutoff, keep: 2, limit: 3).0 == 0)
        #expect(try await Self.pass(store, before: t, keep: 0, limit: 3).0 == 0)
        // Keeping none: every ended run past the cutoff goes, the active one stays.
        #expect(try await Self.pass(store, before: cutoff, keep: 0, limit: 1000).0 == 1)
        #expect(try await store.run(id: active.id)?.status == .queued)
        #expect(try await store.run(id: late.id) != nil)
    }

    @Test("schedule occurrences recorded before the cutoff are deleted in batches", arguments: StoreKind.allCases)
    func deletesOccurrences(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let job = try await store.createJob(
            JobDefinition(
                name: "nightly", hostId: fixture.host.id, agentType: .datahealth,
                parameters: .file(fileName: "checks.yaml"), schedule: JobSchedule(cron: "0 3 * * *")),
            now: fixture.now)
        let state = try #require(try await store.job(id: job.id)?.scheduleState)
        let first = try #require(state.nextOccurrence)
        let occurrences = (0..<3).map { first.addingTimeInterval(Double($0) * Self.day) }
        let next = first.addingTimeInterval(3 * Self.day)
        let recorded = try await store.recordOccurrences(
            jobId: job.id, expectedCursor: state.cursor,
            decisions: occurrences.map { OccurrenceDecision(scheduledAt: $0, action: .missed, reason: "test") },
            newState: ScheduleState(cursor: occurrences[2], nextOccurrence: next, dueAt: next), now: occurrences[2])
        #expect(recorded.count == 3)

        #expect(try await store.deleteScheduleOccurrences(recordedBefore: occurrences[2], limit: 10) == 0)
        let cutoff = occurrences[2].addingTimeInterval(1)
        #expect(try await store.deleteScheduleOccurrences(recordedBefore: cutoff, limit: 2) == 2)
        #expect(try await store.deleteScheduleOccurrences(recordedBefore: cutoff, limit: 2) == 1)
        #expect(try await store.scheduleOccurrences(jobId: job.id, limit: 10).isEmpty)
        // The schedule goes on from its cursor: the deleted occurrences are not due again.
        #expect(try await store.job(id: job.id)?.scheduleState?.cursor == occurrences[2])
    }
}
