import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// A control plane on a fresh SQLite store with tokens of every scope and one registered host.
struct APIFixture {
    let store: SQLiteStore
    let directory: URL
    let api: ControlPlaneAPI
    var admin = ""
    var writer = ""
    var reader = ""
    var hostCredential = ""
    var hostId = ""

    static func make() async throws -> APIFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-api-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = try SQLiteStore(path: directory.appendingPathComponent("db.sqlite").path)
        var fixture = APIFixture(store: store, directory: directory, api: ControlPlaneAPI(store: store))
        fixture.admin = try await store.createAPIToken(name: "admin", scope: .admin, now: Date()).1.value
        fixture.writer = try await store.createAPIToken(name: "writer", scope: .write, now: Date()).1.value
        fixture.reader = try await store.createAPIToken(name: "reader", scope: .read, now: Date()).1.value
        let (_, registration) = try await store.createRegistrationToken(
            expiresAt: Date().addingTimeInterval(600), now: Date())
        let credential = Secret.generate(prefix: "ajh")
        fixture.hostId = try await store.registerHost(
            registrationTokenHash: registration.hash, name: "db-1", managedAgents: [.lineagePlus, .datahealth],
            credential: credential, now: Date()
        ).id
        fixture.hostCredential = credential.value
        return fixture
    }

    func cleanup() async {
        await store.close()
        try? FileManager.default.removeItem(at: directory)
    }

    func application(port: Int = 0) -> some ApplicationProtocol {
        Application(
            router: ControlPlaneServer.router(api: api),
            configuration: .init(address: .hostname("127.0.0.1", port: port)))
    }

    /// Counts of everything a bad request must leave untouched.
    func snapshot() async throws -> [Int] {
        [
            try await store.listJobs(JobFilter()).count,
            try await store.listRuns(RunFilter(), cursor: nil, limit: 500).runs.count,
            try await store.listHosts().count,
            try await store.listAPITokens().count,
            try await store.pendingOutbox(limit: 1000).count,
            try await store.listAudit(AuditFilter(), cursor: nil, limit: 500).entries.count,
        ] + (try await store.listJobs(JobFilter()).map(\.job.version))
    }

    func jobBody(
        name: String = "nightly", agentType: String = "datahealth", parameters: String = #"{"fileName":"checks.yaml"}"#
    )
        -> String
    {
        #"{"name":"\#(name)","hostId":"\#(hostId)","agentType":"\#(agentType)","parameters":\#(parameters)}"#
    }
}

extension TestClientProtocol {
    /// Sends a request with an optional bearer token and JSON body; returns status and decoded body.
    func call(_ method: HTTPRequest.Method, _ uri: String, token: String?, body: String? = nil) async throws -> (
        status: HTTPResponse.Status, json: JSONValue
    ) {
        try await call(method, uri, token: token, bytes: body.map { Array($0.utf8) })
    }

    /// ``call(_:_:token:body:)`` with a body of any bytes (not necessarily UTF-8).
    func call(_ method: HTTPRequest.Method, _ uri: String, token: String?, bytes: [UInt8]?) async throws -> (
        status: HTTPResponse.Status, json: JSONValue
    ) {
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer \(token)" }
        if bytes != nil { headers[.contentType] = "application/json" }
        return try await execute(
            uri: uri, method: method, headers: headers, body: bytes.map { ByteBuffer(bytes: $0) }
        ) { response in
            let json =
                response.body.readableBytes == 0
                ? JSONValue.null
                : (try? JSONDecoder().decode(JSONValue.self, from: Data(response.body.readableBytesView)))
                    ?? .string("<not json>")
            return (response.status, json)
        }
    }
}

extension JSONValue {
    var errorCode: String? { self["error"]?["code"]?.string }
    var errorField: String? { self["error"]?["field"]?.string }
}
