import AgentJobsControlPlane
import AgentJobsCore
import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite("Live server")
struct LiveServerTests {
    @Test("200 concurrent triggers of one job over real HTTP: exactly one 201, the rest 409 with the same active run")
    func concurrentTriggers() async throws {
        let fixture = try await APIFixture.make()
        let job = try await fixture.store.createJob(
            JobDefinition(
                name: "race", hostId: fixture.hostId, agentType: .datahealth, parameters: .file(fileName: "f")),
            now: Date())
        try await fixture.application().test(.live) { client in
            let port = try #require(client.port)
            let url = "http://127.0.0.1:\(port)/api/v1/jobs/\(job.id)/runs"
            let token = fixture.writer
            let results = try await withThrowingTaskGroup(of: (UInt, JSONValue).self) { group in
                for _ in 0..<200 {
                    group.addTask {
                        var request = HTTPClientRequest(url: url)
                        request.method = .POST
                        request.headers.add(name: "Authorization", value: "Bearer \(token)")
                        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
                        let body = try await response.body.collect(upTo: 1 << 20)
                        return (
                            response.status.code,
                            try JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView))
                        )
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let created = results.filter { $0.0 == 201 }
            let conflicts = results.filter { $0.0 == 409 }
            #expect(created.count == 1)
            #expect(conflicts.count == 199)
            let runId = try #require(created.first?.1["id"]?.string)
            #expect(conflicts.allSatisfy { $0.1["error"]?["activeRunId"]?.string == runId })
        }
        #expect(try await fixture.store.listRuns(.init(jobId: job.id), cursor: nil, limit: 500).runs.count == 1)
        await fixture.cleanup()
    }
}
