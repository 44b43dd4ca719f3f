import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// A small client of the Docker Engine API over its unix socket: the requests the docker driver
/// needs, with the API version negotiated once per client.
final class DockerEngineClient: Sendable {
    /// The oldest Engine API version the driver works with (Docker 20.10).
    static let minimumAPIVersion = DockerAPIVersion(major: 1, minor: 41)
    /// The newest version the driver asks for; newer daemons answer in this version's terms.
    static let maximumAPIVersion = DockerAPIVersion(major: 1, minor: 45)

    let socketPath: String
    private let httpClient: HTTPClient
    private let requestTimeout: TimeAmount
    private let negotiated = Mutex<DockerAPIVersion?>(nil)

    init(socketPath: String, httpClient: HTTPClient, requestTimeoutSeconds: Double) {
        self.socketPath = socketPath
        self.httpClient = httpClient
        requestTimeout = .milliseconds(Int64(requestTimeoutSeconds * 1000))
    }

    /// A daemon's answer: status and the whole body.
    struct Response: Sendable {
        var status: UInt
        var body: ByteBuffer

        var isSuccess: Bool { (200..<300).contains(status) }

        /// The daemon's error message (`{"message": "..."}`), or the raw body.
        var message: String {
            struct ErrorBody: Decodable { var message: String }
            if let decoded = try? JSONDecoder().decode(ErrorBody.self, from: Data(body.readableBytesView)) {
                return decoded.message
            }
            return String(buffer: body)
        }

        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            do {
                return try JSONDecoder().decode(type, from: Data(body.readableBytesView))
            } catch {
                throw OrchestratorError(
                    code: .dockerRequestFailed, message: "the Docker daemon sent an answer the driver cannot read",
                    detail: "\(error)")
            }
        }
    }

    /// The API version to use: the daemon's, capped at ``maximumAPIVersion``.
    /// - Throws: ``OrchestratorError`` `dockerAPIVersionUnsupported` below ``minimumAPIVersion``.
    func apiVersion() async throws -> DockerAPIVersion {
        if let version = negotiated.withLock({ $0 }) { return version }
        let response = try await send(.GET, path: "/version", versioned: false)
        guard response.isSuccess else { throw failure("GET /version", response) }
        // Docker Engine API field names, as the engine spells them.
        // swift-format-ignore: AlwaysUseLowerCamelCase
        struct Version: Decodable {
            var ApiVersion: String
            var Version: String?
        }
        let version = try response.decode(Version.self)
        guard let server = DockerAPIVersion(version.ApiVersion) else {
            throw OrchestratorError(
                code: .dockerAPIVersionUnsupported,
                message: "the Docker daemon reports an unreadable API version '\(version.ApiVersion)'")
        }
        guard server >= Self.minimumAPIVersion else {
            throw OrchestratorError(
                code: .dockerAPIVersionUnsupported,
                message:
                    "the Docker daemon at \(socketPath) speaks Engine API \(server) (Docker \(version.Version ?? "?")); AgentJobs needs API \(Self.minimumAPIVersion) or newer (Docker 20.10+): upgrade Docker or use the process driver"
            )
        }
        let chosen = min(server, Self.maximumAPIVersion)
        negotiated.withLock { $0 = chosen }
        return chosen
    }

    /// Sends a request and collects the answer.
    /// - Parameters:
    ///   - path: The endpoint without version prefix, e.g. `/containers/create`.
    ///   - query: Query parameters (percent-encoded here).
    ///   - versioned: Whether to prefix the negotiated `/v1.xx`.
    ///   - timeout: Overrides the client's request timeout (long-held requests: wait, stop).
    func send(
        _ method: HTTPMethod, path: String, query: [(String, String)] = [], json: (any Encodable & Sendable)? = nil,
        versioned: Bool = true, timeout: TimeAmount? = nil
    ) async throws -> Response {
        var request = HTTPClientRequest(url: try await url(path, query: query, versioned: versioned))
        request.method = method
        request.headers.add(name: "Host", value: Self.host)
        if let json {
            let data = try JSONEncoder().encode(json)
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        do {
            let response = try await httpClient.execute(request, timeout: timeout ?? requestTimeout)
            let body = try await response.body.collect(upTo: 32 * 1024 * 1024)
            return Response(status: response.status.code, body: body)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw OrchestratorError(
                code: .dockerTimedOut, message: "the Docker daemon did not answer \(method) \(path) in time",
                detail: "\(error)")
        } catch let error as OrchestratorError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw OrchestratorError(
                code: .dockerUnavailable,
                message:
                    "cannot reach the Docker daemon at \(socketPath): is it running, and may this user use its socket?",
                detail: "\(error)")
        }
    }

    /// Streams a response body (for logs) to `consume`; returns the status.
    func stream(
        _ path: String, query: [(String, String)], timeout: TimeAmount, consume: (ByteBuffer) throws -> Void
    ) async throws -> UInt {
        var request = HTTPClientRequest(url: try await url(path, query: query, versioned: true))
        request.headers.add(name: "Host", value: Self.host)
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: timeout)
        } catch {
            throw OrchestratorError(
                code: .dockerUnavailable, message: "cannot reach the Docker daemon at \(socketPath)", detail: "\(error)"
            )
        }
        guard (200..<300).contains(response.status.code) else {
            let body = try await response.body.collect(upTo: 1024 * 1024)
            throw failure("GET \(path)", Response(status: response.status.code, body: body))
        }
        for try await chunk in response.body { try consume(chunk) }
        return response.status.code
    }

    private func url(_ path: String, query: [(String, String)], versioned: Bool) async throws -> String {
        var uri = versioned ? "/v\(try await apiVersion())\(path)" : path
        if !query.isEmpty {
            uri += "?" + query.map { "\(Self.encode($0.0))=\(Self.encode($0.1))" }.joined(separator: "&")
        }
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: uri) else {
            throw OrchestratorError(
                code: .invalidConfiguration, message: "the Docker socket path '\(socketPath)' cannot be used in a URL")
        }
        return url.absoluteString
    }

    /// The daemon insists on a Host header, and a unix socket URL has no host name to send.
    private static let host = "docker"

    private static let unreserved = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    private static func encode(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? value
    }

    /// The error for an unexpected answer.
    func failure(_ what: String, _ response: Response) -> OrchestratorError {
        OrchestratorError(
            code: .dockerRequestFailed, message: "the Docker daemon refused \(what): \(response.message)",
            detail: "HTTP \(response.status)")
    }
}

/// An Engine API version, e.g. 1.41.
struct DockerAPIVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    var major: Int
    var minor: Int

    init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    /// Parses `1.41`.
    init?(_ text: String) {
        let parts = text.split(separator: ".")
        guard parts.count == 2, let major = Int(parts[0]), let minor = Int(parts[1]) else { return nil }
        self.init(major: major, minor: minor)
    }

    static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
    }

    var description: String { "\(major).\(minor)" }
}

extension HTTPClient {
    /// The client of the Docker drivers: one connection per request in flight. The shared client
    /// opens at most 8 per host and queues the rest, and every running container holds one for its
    /// wait, so with 8 containers running a launch's first request waited for a connection until
    /// it timed out, and the run was rejected. Connections to a local socket are cheap; the
    /// daemon, not this pool, is the limit.
    ///
    /// A connection to the local socket is made at once or not at all (no daemon, or no socket): the
    /// client tries again until its connect timeout, 10 s by default, so each request to a stopped
    /// daemon took 10 s to fail, and a launch retry waiting on it answered a cancel that late. 2 s.
    public static let dockerEngine: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 100_000)
        configuration.timeout = .init(connect: .seconds(2))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()
}
