import AgentJobsCore
import AgentJobsStore
import Foundation
import Testing

@Suite("Store conformance: paging hosts and jobs")
struct ListingPagingTests {
    static func register(_ store: any Store, _ name: String, agents: [AgentType] = [.datahealth], at now: Date)
        async throws -> AgentJobsCore.Host
    {
        let (_, registration) = try await store.createRegistrationToken(expiresAt: now.addingTimeInterval(60), now: now)
        return try await store.registerHost(
            registrationTokenHash: registration.hash, name: name, managedAgents: agents,
            credential: Secret.generate(prefix: "ajh"), now: now)
    }

    @Test(
        "hosts page by name, filtered, with a total; hosts registered meanwhile never make one skipped or repeated",
        arguments: StoreKind.allCases)
    func hostsPaged(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var before: [AgentJobsCore.Host] = []
        for index in 0..<23 {
            // Two hosts share each even name: the id breaks the tie.
            let name = "edge-\(String(format: "%02d", index / 2 * 2))"
            before.append(
                try await Self.register(store, name, agents: index % 3 == 0 ? [.lineagePlus] : [.datahealth], at: now))
        }
        var seen: [String] = []
        var cursor: String?
        var pages = 0
        repeat {
            let page = try await store.listHosts(HostFilter(), cursor: cursor, limit: 5)
            #expect(page.total == 23 + pages * 2)
            seen += page.hosts.map(\.id)
            cursor = page.nextCursor
            pages += 1
            // Registered while paging: one sorts before every page, one after.
            _ = try await Self.register(store, "aaa-\(pages)", at: now)
            _ = try await Self.register(store, "zzz-\(pages)", at: now)
        } while cursor != nil && pages < 20
        let expected = before.sorted { ($0.name, $0.id) < ($1.name, $1.id) }.map(\.id)
        #expect(seen.filter { id in expected.contains(id) } == expected, "every host once, in name order")
        #expect(Set(seen).count == seen.count, "a host was repeated")

        let prefixed = try await store.listHosts(HostFilter(namePrefix: "edge-1"), cursor: nil, limit: 100)
        #expect(prefixed.hosts.allSatisfy { $0.name.hasPrefix("edge-1") } && prefixed.hosts.count == 10)
        #expect(prefixed.total == 10)
        let lineage = try await store.listHosts(HostFilter(agentType: .lineagePlus), cursor: nil, limit: 100)
        #expect(lineage.hosts.count == 8 && lineage.hosts.allSatisfy { $0.managedAgents == [.lineagePlus] })
        let named = try await store.listHosts(HostFilter(name: "edge-04"), cursor: nil, limit: nil)
        #expect(named.hosts.count == 2 && named.nextCursor == nil)
        await #expect(throws: ValidationError.self) {
            try await store.listHosts(HostFilter(), cursor: "c12", limit: 5)
        }
    }

    @Test(
        "jobs page newest first, filtered by name, host, agent type and last run, with a total; jobs created meanwhile never make one skipped or repeated",
        arguments: StoreKind.allCases)
    func jobsPaged(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        var before: [Job] = []
        for index in 0..<17 {
            before.append(try await fixture.job(index % 2 == 0 ? "Nightly-\(index)" : "hourly-\(index)"))
        }
        // One run that failed, one still queued.
        let failed = try await store.triggerRun(
            jobId: before[3].id, trigger: .api, scheduledAt: nil, now: fixture.now)
        _ = try await store.applyRunEvents(
            [RunEventStoreTests.event(.failed, failed, sequence: 1, at: fixture.now)], now: fixture.now)
        _ = try await store.triggerRun(jobId: before[4].id, trigger: .api, scheduledAt: nil, now: fixture.now)

        var seen: [String] = []
        var cursor: String?
        var pages = 0
        repeat {
            let page = try await store.listJobs(JobFilter(), cursor: cursor, limit: 4)
            #expect(page.total == 17 + pages)
            seen += page.jobs.map(\.job.id)
            cursor = page.nextCursor
            pages += 1
            _ = try await fixture.job("created-while-paging-\(pages)")
        } while cursor != nil && pages < 20
        #expect(seen == before.reversed().map(\.id), "every job once, newest first, none created meanwhile")

        let nightly = try await store.listJobs(JobFilter(nameContains: "NIGHT"), cursor: nil, limit: 100)
        #expect(nightly.total == 9 && nightly.jobs.allSatisfy { $0.job.name.hasPrefix("Nightly-") })
        let exact = try await store.listJobs(JobFilter(name: "hourly-3"), cursor: nil, limit: nil)
        #expect(exact.jobs.map(\.job.id) == [before[3].id])
        let failedJobs = try await store.listJobs(JobFilter(lastRun: .status(.failed)), cursor: nil, limit: nil)
        #expect(failedJobs.jobs.map(\.job.id) == [before[3].id] && failedJobs.total == 1)
        let queued = try await store.listJobs(JobFilter(lastRun: .status(.queued)), cursor: nil, limit: nil)
        #expect(queued.jobs.map(\.job.id) == [before[4].id])
        let never = try await store.listJobs(JobFilter(lastRun: .never), cursor: nil, limit: 2)
        #expect(never.total == 17 + pages - 2 && never.jobs.count == 2 && never.nextCursor != nil)
        let onHost = try await store.listJobs(
            JobFilter(hostId: fixture.host.id, agentType: .datahealth, nameContains: "ly-1"), cursor: nil, limit: nil)
        #expect(
            Set(onHost.jobs.map(\.job.name)) == [
                "hourly-1", "Nightly-10", "hourly-11", "Nightly-12", "hourly-13",
                "Nightly-14", "hourly-15", "Nightly-16",
            ])
        await #expect(throws: ValidationError.self) {
            try await store.listJobs(JobFilter(), cursor: "hzzz.x", limit: 5)
        }
    }
}
