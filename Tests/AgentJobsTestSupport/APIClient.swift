import AgentJobsCore
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The public HTTP API, for arranging what a test needs and for checking what the UI did.
public struct APIClient: Sendable {
    public let baseURL: String
    public let token: String

    public init(baseURL: String, token: String) {
        self.baseURL = baseURL
        self.token = token
    }

    @discardableResult
    public func call(_ method: HTTPMethod, _ path: String, body: String? = nil, expect: UInt? = nil) async throws
        -> JSONValue
    {
        var request = HTTPClientRequest(url: baseURL + "/api/v1" + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 4 << 20)
        let json =
            bytes.readableBytes == 0
            ? JSONValue.null : (try? JSONDecoder().decode(JSONValue.self, from: Data(bytes.readableBytesView))) ?? .null
        if let expect, response.status.code != expect {
            throw TestAPIError(
                "\(method) \(path) answered \(response.status.code), expected \(expect): \(json)")
        }
        return json
    }

    public func localHostId() async throws -> String {
        let hosts = try await call(.GET, "/hosts", expect: 200)
        guard let id = hosts["hosts"]?.array.first(where: { $0["name"]?.string == "local" })?["id"]?.string else {
            throw TestAPIError("agentjobs dev registered no host named local: \(hosts)")
        }
        return id
    }

    /// Creates a job and returns its id.
    @discardableResult
    public func createJob(
        name: String, hostId: String, agentType: String = "datahealth",
        parameters: String = #"{"fileName":"checks.yaml"}"#,
        schedule: String? = nil
    ) async throws -> String {
        var body = #"{"name":"\#(name)","hostId":"\#(hostId)","agentType":"\#(agentType)","parameters":\#(parameters)"#
        if let schedule { body += #","schedule":\#(schedule)"# }
        body += "}"
        let job = try await call(.POST, "/jobs", body: body, expect: 201)
        guard let id = job["id"]?.string else { throw TestAPIError("no job id in \(job)") }
        return id
    }

    /// Triggers a job and returns the run id.
    public func trigger(_ jobId: String) async throws -> String {
        let run = try await call(.POST, "/jobs/\(jobId)/runs", body: #"{"trigger":"api"}"#, expect: 201)
        guard let id = run["id"]?.string else { throw TestAPIError("no run id in \(run)") }
        return id
    }

    /// Registers another host with the given agent types (through a registration token, as a real
    /// host does). No orchestrator runs for it, so its runs stay queued ("waiting for host").
    /// - Parameter registrationToken: The token to register with; a new one when nil.
    /// - Returns: The host id.
    @discardableResult
    public func registerHost(name: String, managedAgents: [String], registrationToken: String? = nil) async throws
        -> String
    {
        var secret = registrationToken ?? ""
        if registrationToken == nil {
            let registration = try await call(.POST, "/registration-tokens", body: "{}", expect: 201)
            guard let created = registration["token"]?.string else {
                throw TestAPIError("no registration token secret in \(registration)")
            }
            secret = created
        }
        var request = HTTPClientRequest(url: baseURL + "/api/v1/hosts/register")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(secret)")
        request.headers.add(name: "Content-Type", value: "application/json")
        let agents = managedAgents.map { "\"\($0)\"" }.joined(separator: ",")
        request.body = .bytes(ByteBuffer(string: #"{"name":"\#(name)","managedAgents":[\#(agents)]}"#))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        let json = (try? JSONDecoder().decode(JSONValue.self, from: Data(bytes.readableBytesView))) ?? .null
        guard response.status.code == 201, let id = json["host"]?["id"]?.string else {
            throw TestAPIError("host registration answered \(response.status.code): \(json)")
        }
        return id
    }

    /// Polls a run until `done` holds.
    /// - Throws: ``TestAPIError`` with the run as last seen after `timeout`.
    @discardableResult
    public func waitForRun(_ runId: String, timeout: Duration = .seconds(30), until done: (JSONValue) -> Bool)
        async throws
        -> JSONValue
    {
        let deadline = ContinuousClock.now + timeout
        var last = JSONValue.null
        while ContinuousClock.now < deadline {
            last = try await call(.GET, "/runs/\(runId)", expect: 200)
            if done(last) { return last }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestAPIError("run \(runId) did not reach the expected state within \(timeout); last seen: \(last)")
    }
}

/// A request through the test API client did not answer as expected.
public struct TestAPIError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reading JSON answers in tests.
extension JSONValue {
    public subscript(_ key: String) -> JSONValue? {
        guard case .object(let object) = self else { return nil }
        return object[key]
    }

    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var number: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    public var array: [JSONValue] {
        if case .array(let values) = self { return values }
        return []
    }
}
