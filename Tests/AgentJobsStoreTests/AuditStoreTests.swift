import AgentJobsCore
import AgentJobsStore
import Foundation
import Testing

@Suite("Store conformance: audit log")
struct AuditStoreTests {
    @Test(
        "every change through the store is audited with its actor, listed newest first, filtered and paged",
        arguments: StoreKind.allCases)
    func changesAreAudited(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let t = fixture.now
        let (admin, _) = try await store.createAPIToken(name: "alice", scope: .admin, now: t)
        let alice = RunRequester(kind: .token, id: admin.id, name: admin.name)
        // An orchestrator's start re-syncs the same agents: no change, no entry.
        _ = try await store.updateManagedAgents(
            hostId: fixture.host.id, managedAgents: fixture.host.managedAgents, now: t)

        let job = try await store.createJob(
            JobDefinition(
                name: "nightly", hostId: fixture.host.id, agentType: .datahealth,
                parameters: .file(fileName: "checks.yaml"), schedule: JobSchedule(cron: "0 3 * * *")),
            by: alice, now: t.addingTimeInterval(1))
        var paused = JobDefinition(job)
        paused.schedule?.paused = true
        _ = try await store.updateJob(
            id: job.id, expectedVersion: 1, definition: paused, by: alice, now: t.addingTimeInterval(2))
        var edited = paused
        edited.timeoutSeconds = 600
        edited.parameters = .file(fileName: "other.yaml")
        _ = try await store.updateJob(
            id: job.id, expectedVersion: 2, definition: edited, by: alice, now: t.addingTimeInterval(3))
        // A refused edit changes nothing, so nothing is audited.
        await expectStoreError(.conflict) {
            try await store.updateJob(id: job.id, expectedVersion: 1, definition: edited, by: alice, now: t)
        }
        let run = try await store.triggerRun(
            jobId: job.id, trigger: .manual, scheduledAt: nil, rerunOf: nil, triggeredBy: alice,
            now: t.addingTimeInterval(4), traceParent: nil)
        _ = try await store.requestCancel(runId: run.id, by: alice, now: t.addingTimeInterval(5))
        // The schedule's own trigger is no change anyone made; cancelling it is.
        let scheduled = try await store.triggerRun(
            jobId: job.id, trigger: .schedule, scheduledAt: t, now: t.addingTimeInterval(6))
        _ = try await store.requestCancel(runId: scheduled.id, now: t.addingTimeInterval(7))
        try await store.deleteJob(id: job.id, by: alice, now: t.addingTimeInterval(8))
        _ = try await store.revokeAPIToken(id: admin.id, by: alice, now: t.addingTimeInterval(9))
        _ = try await store.revokeAPIToken(id: admin.id, by: alice, now: t.addingTimeInterval(10))
        _ = try await store.revokeHost(id: fixture.host.id, by: alice, now: t.addingTimeInterval(11))
        _ = try await store.revokeHost(id: fixture.host.id, by: alice, now: t.addingTimeInterval(12))

        let all = try await store.listAudit(AuditFilter(), cursor: nil, limit: 100)
        #expect(all.nextCursor == nil)
        #expect(
            all.entries.reversed().map(\.action) == [
                .registrationTokenCreated, .hostRegistered, .apiTokenCreated, .jobCreated, .jobPaused, .jobUpdated,
                .runTriggered, .runCancelRequested, .runCancelRequested, .jobDeleted, .apiTokenRevoked, .hostRevoked,
            ])
        #expect(all.entries.map(\.sequence) == all.entries.map(\.sequence).sorted(by: >))
        let registered = try #require(all.entries.first { $0.action == .hostRegistered })
        #expect(registered.actor == RunRequester(kind: .host, id: fixture.host.id, name: "db-1"))
        #expect(all.entries.first { $0.action == .apiTokenCreated }?.actor == nil)

        let history = try await store.listAudit(AuditFilter(targetId: job.id), cursor: nil, limit: 100).entries
        #expect(history.map(\.action) == [.jobDeleted, .jobUpdated, .jobPaused, .jobCreated])
        #expect(history.allSatisfy { $0.actor == alice && $0.targetName == "nightly" })
        #expect(history[1].summary == "version 3: parameters, timeoutSeconds")
        #expect(history[2].summary == "version 2")
        #expect(history[1].at == t.addingTimeInterval(3))

        let runs = try await store.listAudit(AuditFilter(targetKind: "run"), cursor: nil, limit: 100).entries
        #expect(runs.map(\.targetId) == [scheduled.id, run.id, run.id])
        #expect(runs.last?.summary?.contains("trigger manual") == true)
        #expect(runs.first?.actor == nil)
        let byAlice = try await store.listAudit(AuditFilter(actorId: admin.id), cursor: nil, limit: 100).entries
        #expect(byAlice.count == 8)
        let revocations = try await store.listAudit(AuditFilter(action: .hostRevoked), cursor: nil, limit: 100)
        #expect(revocations.entries.count == 1)

        // Pages: no entry skipped or repeated.
        var seen: [Int64] = []
        var cursor: String?
        repeat {
            let page = try await store.listAudit(AuditFilter(), cursor: cursor, limit: 5)
            seen += page.entries.map(\.sequence)
            cursor = page.nextCursor
        } while cursor != nil
        #expect(seen == all.entries.map(\.sequence))
        await #expect(throws: ValidationError.self) {
            try await store.listAudit(AuditFilter(), cursor: "nope", limit: 5)
        }

        // Retention deletes the oldest first.
        #expect(try await store.deleteAuditEntries(before: t.addingTimeInterval(2), limit: 2) == 2)
        #expect(try await store.deleteAuditEntries(before: t.addingTimeInterval(2), limit: 10) == 2)
        let left = try await store.listAudit(AuditFilter(), cursor: nil, limit: 100).entries
        #expect(left.last?.action == .jobPaused)
    }
}
