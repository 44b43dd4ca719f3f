import AgentJobsCore
import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Where the control plane is and how to authenticate, from flags or the environment.
struct ClientOptions: ParsableArguments {
    @Option(help: "Control plane URL (env AGENTJOBS_URL; else the profile's; default http://127.0.0.1:8080).")
    var url: String?

    @Option(help: "API token (env AGENTJOBS_TOKEN; else the profile's). An argument is visible in ps.")
    var token: String?

    @Option(name: [.short, .long], help: "table or json.")
    var output: OutputFormat = .table

    @Option(help: "Profile of ~/.config/agentjobs/config to use (env AGENTJOBS_PROFILE; default: default).")
    var profile: String?

    /// The client, from (first found) the flags, the environment, the settings file's profile, the defaults.
    func client() throws -> APIClient {
        let environment = ProcessInfo.processInfo.environment
        let named = profile ?? environment["AGENTJOBS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 }
        let settings = try ClientProfile.load(name: named, environment: environment)
        let base = url ?? environment["AGENTJOBS_URL"] ?? settings?.url ?? "http://127.0.0.1:8080"
        let configured = try token ?? environment["AGENTJOBS_TOKEN"] ?? settings?.resolvedToken(environment)
        guard let token = configured, !token.isEmpty else {
            throw CLIError(
                "no API token: set AGENTJOBS_TOKEN, or a profile's token in \(ClientProfile.path(environment)) (agentjobs dev writes one to DATA_DIR/admin-token)",
                status: ExitStatus.unauthorized)
        }
        return APIClient(baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base, token: token)
    }
}

/// A thin client of the control plane's HTTP API. Server errors become ``CLIError`` with the
/// server's message.
struct APIClient {
    var baseURL: String
    var token: String?

    /// Sends a request and returns the decoded JSON body (or `.null` for an empty body).
    /// - Throws: ``CLIError`` with the server's message for a non-2xx answer or an unreachable server.
    func send(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil) async throws -> JSONValue {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await Self.http.execute(request, timeout: .seconds(30))
            bytes = try await response.body.collect(upTo: 64 << 20)
        } catch {
            throw CLIError("cannot reach the control plane at \(baseURL): \(error)", status: ExitStatus.unreachable)
        }
        let json =
            bytes.readableBytes == 0
            ? JSONValue.null : (try? JSONDecoder().decode(JSONValue.self, from: Data(bytes.readableBytesView))) ?? .null
        guard (200..<300).contains(response.status.code) else {
            throw Self.error(status: response.status.code, json: json)
        }
        return json
    }

    /// The CLI's HTTP client: a control plane that refuses connections (wrong URL, stopped) fails the
    /// command after 5 s of connection attempts (retried meanwhile, as during a restart), not at the
    /// 30 s request deadline.
    private static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(5)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    static func error(status: UInt, json: JSONValue) -> CLIError {
        guard case .object(let object) = json, case .object(let error)? = object["error"] else {
            return CLIError("the server answered HTTP \(status)", status: ExitStatus.forHTTP(status))
        }
        var message = error["message"]?.stringValue ?? "HTTP \(status)"
        if let code = error["code"]?.stringValue { message += " [\(code)]" }
        if let active = error["activeRunId"]?.stringValue, !message.contains(active) {
            message += " (active run \(active))"
        }
        return CLIError(message, status: ExitStatus.forHTTP(status))
    }
}

extension JSONValue {
    var stringValue: String? {
        switch self {
        case .string(let string): return string
        case .number(let number): return number.rounded() == number ? String(Int(number)) : String(number)
        case .bool(let bool): return String(bool)
        default: return nil
        }
    }

    subscript(_ key: String) -> JSONValue? {
        guard case .object(let object) = self else { return nil }
        return object[key]
    }

    var arrayValue: [JSONValue] {
        if case .array(let array) = self { return array }
        return []
    }
}

extension String {
    /// Percent-encodes a path segment or query value.
    var urlEncoded: String {
        addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? self
    }
}
