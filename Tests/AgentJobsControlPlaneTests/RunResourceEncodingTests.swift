import AgentJobsCore
import Foundation
import Testing

@testable import AgentJobsControlPlane

@Suite("Run resource encoding")
struct RunResourceEncodingTests {
    @Test("a run's response body is the same bytes JSONEncoder writes, for every field set or null")
    func runResourceMatchesJSONEncoder() throws {
        let queuedAt = Date(timeIntervalSince1970: 1_790_000_000.125)
        let bare = Run(
            id: "run_1", jobId: "job_1", jobName: "nightly", jobVersion: 2, hostId: "host_1", agentType: .lineagePlus,
            parameters: .connectors(connectorTypes: ["snowflake", "dbt/core"], connectionName: nil),
            timeoutSeconds: 3600, queueTimeoutSeconds: 600, trigger: .api, queuedAt: queuedAt)
        var finished = bare
        finished.agentType = .datahealth
        finished.parameters = .file(fileName: "checks \"daily\".yaml")
        finished.jobName = "ünïcödé \n name"
        finished.status = .failed
        finished.trigger = .schedule
        finished.scheduledAt = queuedAt.addingTimeInterval(-1)
        finished.startedAt = queuedAt.addingTimeInterval(2.5)
        finished.finishedAt = queuedAt.addingTimeInterval(65.0005)
        finished.exitCode = -9
        finished.errorSummary = "connection a: timeout\n  log: /var/log/agent/a.log"
        finished.cancelRequestedAt = queuedAt.addingTimeInterval(60)
        finished.dispatchEpoch = 3
        finished.rerunOf = "run_0"
        finished.triggeredBy = RunRequester(kind: .token, id: "tok_1", name: "ci \"deploy\" ü/x")
        finished.cancelRequestedBy = RunRequester(kind: .host, id: "host_1")
        var scheduled = bare
        scheduled.triggeredBy = .schedule
        let resources = [
            RunResource(run: bare), RunResource(run: bare, waitingReason: "Dispatched to host h (host_1)"),
            RunResource(run: finished), RunResource(run: scheduled),
        ]
        for resource in resources {
            #expect(resource.jsonBytes == Array(try JSONResponse.encoder().encode(resource)))
        }
    }
}
