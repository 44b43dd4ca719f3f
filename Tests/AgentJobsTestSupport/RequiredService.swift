import Foundation
import Testing

/// A service a test tier needs, named by an environment variable (a broker address, a Docker socket).
///
/// Without it the tier is skipped with ``skipReason`` — except in CI (`CI=true`), where the tests run
/// and ``require()`` fails each of them, so a CI run can never pass by silently skipping the service.
public struct RequiredService: Sendable {
    /// The environment variable that names the service.
    public let variable: String
    /// What the tests need, for messages ("a Kafka-protocol broker").
    public let what: String
    /// How to start one locally.
    public let startHint: String

    public init(variable: String, what: String, startHint: String) {
        self.variable = variable
        self.what = what
        self.startHint = startHint
    }

    /// A real Kafka-protocol broker (`host:port[,host:port]`), started by `make test`.
    public static let kafkaBroker = RequiredService(
        variable: "AGENTJOBS_TEST_KAFKA_BROKERS", what: "a real Kafka-protocol broker",
        startHint: "deploy/testenv/tansu.sh start DIR")
    /// A PostgreSQL server's superuser URL (`postgres://…`), started by `make test`.
    public static let postgres = RequiredService(
        variable: "AGENTJOBS_TEST_POSTGRES_URL", what: "a PostgreSQL server",
        startHint: "deploy/testenv/postgres.sh start DIR")
    /// A Docker engine's unix socket, started by `make test`.
    public static let dockerEngine = RequiredService(
        variable: "AGENTJOBS_TEST_DOCKER_SOCKET", what: "a Docker engine",
        startHint: "deploy/testenv/docker.sh start DIR")

    /// A directory with Python's `prometheus_client` (a real Prometheus text-format parser) for
    /// PYTHONPATH, installed by `make test`.
    public static let prometheusClient = RequiredService(
        variable: "AGENTJOBS_TEST_PROMETHEUS_CLIENT", what: "Python's prometheus_client parser",
        startHint: "deploy/testenv/prometheus-client.sh")

    /// The `host:port` entries of a broker list such as ``kafkaBroker``'s value.
    public static func brokerList(_ value: String) -> [String] {
        value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// Whether this is a CI run (`CI=true`).
    public static var isCI: Bool { ProcessInfo.processInfo.environment["CI"]?.lowercased() == "true" }

    /// The variable's value, when set and not empty.
    public var value: String? {
        guard let value = ProcessInfo.processInfo.environment[variable]?.trimmingCharacters(in: .whitespaces),
            !value.isEmpty
        else { return nil }
        return value
    }

    /// Run the tier when the service is named, or in CI (to fail loudly without it).
    public var shouldRun: Bool { value != nil || Self.isCI }

    /// Why the tier is skipped locally.
    public var skipReason: Comment {
        "\(variable) is not set, so the tests that need \(what) are skipped. Start one with `\(startHint)` and export \(variable)."
    }

    /// The value. Without it: in CI, throws (the test fails); locally, cancels the test with the reason.
    public func require() throws -> String {
        if let value { return value }
        if Self.isCI {
            throw RequiredServiceMissing(
                message:
                    "\(variable) is not set but CI=true: the tests that need \(what) must run in CI (make test starts one; locally: \(startHint))."
            )
        }
        try Test.cancel(skipReason)
    }
}

/// A service the tests must have in CI is missing.
public struct RequiredServiceMissing: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
