import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

/// The distributed shape on PostgreSQL: `serve` and two `aggregate` replicas on one PostgreSQL
/// database of their own, an orchestrator, the test broker, separate processes.
@Suite(
    "Distributed end to end on PostgreSQL", .serialized,
    .enabled(if: EndToEnd.shouldRun && RequiredService.postgres.shouldRun, EndToEnd.skipReason))
struct PostgresEndToEndTests {
    @Test("on PostgreSQL a triggered run succeeds, a second trigger meets the active run, and a cancel ends a long run")
    func runsOnPostgres() async throws {
        try await Cluster.run(aggregators: 2, database: .postgres) { cluster in
            let host = try await cluster.addHost(name: "pg")
            let job = try await cluster.createJob(hostId: host)
            let run = try await cluster.api.trigger(job)
            let done = try await cluster.waitForStatus(run, "succeeded")
            #expect(done["exitCode"]?.number == 0)
            #expect(done["startedAt"]?.string != nil)

            let long = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"sleep-300"}"#)
            let running = try await cluster.api.trigger(long)
            try await cluster.waitForStatus(running, "running")
            let conflict = try await cluster.api.call(.POST, "/jobs/\(long)/runs", expect: 409)
            #expect(conflict["error"]?["activeRunId"]?.string == running, "\(conflict)")
            try await cluster.api.call(.POST, "/runs/\(running)/cancel", expect: 202)
            try await cluster.waitForStatus(running, "canceled", timeout: .seconds(30))
            try await cluster.waitForHost(host, status: "online")
        }
    }
}
