import AgentJobsControlPlane
import AgentJobsStore
import Foundation
import Testing

@Suite("OpenAPI document")
struct OpenAPIDocumentTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test("every route the router serves is described, with its method")
    func everyRouteIsDocumented() async throws {
        let fixture = try await APIFixture.make()
        let document = try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.bytes)) as? [String: Any]
        #expect(document?["openapi"] as? String == "3.1.0")
        let paths = try #require(document?["paths"] as? [String: [String: Any]])
        for (method, path) in fixture.api.routeSignatures {
            #expect(paths[path]?[method.lowercased()] != nil, "\(method) \(path) is not in the OpenAPI document")
        }
        let documented = paths.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } }
        let served = Set(fixture.api.routeSignatures.map { "\($0.method) \($0.path)" })
        for operation in documented
        where !["PARAMETERS", "SUMMARY", "DESCRIPTION"].contains(operation.split(separator: " ")[0]) {
            #expect(served.contains(operation), "\(operation) is documented but not served")
        }
        await fixture.cleanup()
    }

    @Test("the served document is the one in docs/")
    func servedDocumentMatchesDocs() throws {
        let docs = try Data(contentsOf: Self.repositoryRoot.appendingPathComponent("docs/openapi.json"))
        #expect(Array(docs) == OpenAPIDocument.bytes)
    }
}
