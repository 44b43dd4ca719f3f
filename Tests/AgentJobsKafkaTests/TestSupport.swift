import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Logging
import Testing

@testable import AgentJobsKafka

/// Selection of the integration tier (a real Kafka-protocol broker).
///
/// The broker comes from `AGENTJOBS_TEST_KAFKA_BROKERS` (`host:port[,host:port]`). Without it
/// the tier is skipped with a reason, except in CI (`CI=true`), where each test fails so that
/// a CI run can never pass by silently skipping the broker tests.
enum IntegrationEnvironment {
    static let service = RequiredService.kafkaBroker
    static var brokers: [String]? { service.value.map(RequiredService.brokerList) }
    /// Run the tier when a broker is named, or in CI (to fail loudly).
    static var shouldRun: Bool { service.shouldRun }
    static var skipReason: Comment { service.skipReason }

    /// The broker list, or a recorded failure (CI without a broker).
    static func requireBrokers() throws -> [String] {
        RequiredService.brokerList(try service.require())
    }

    /// Client settings for Tansu/Kafka in tests: short session timeout (Tansu quirk).
    static func client(_ brokers: [String], clientID: String = "agentjobs-tests") -> KafkaClientConfiguration {
        KafkaClientConfiguration(bootstrapServers: brokers, clientID: clientID)
    }

    static func consumerProperties() -> [String: String] {
        ["session.timeout.ms": "2000", "heartbeat.interval.ms": "500"].merging(debugProperties()) { a, _ in a }
    }

    /// AGENTJOBS_TEST_KAFKA_DEBUG=cgrp,eos,… turns on librdkafka debug contexts (seen with
    /// AGENTJOBS_TEST_LOG_LEVEL=debug).
    static func debugProperties() -> [String: String] {
        ProcessInfo.processInfo.environment["AGENTJOBS_TEST_KAFKA_DEBUG"].map { ["debug": $0] } ?? [:]
    }
}

struct IntegrationSetupError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A service's `run()` in a background task, stoppable by cancellation (which the Kafka
/// services treat like graceful shutdown).
struct RunningService: Sendable {
    let task: Task<Void, any Error>

    init(_ run: @escaping @Sendable () async throws -> Void) {
        task = Task { try await run() }
    }

    /// Cancels and waits for `run()` to return; returns its error, if any.
    @discardableResult
    func stop() async -> (any Error)? {
        task.cancel()
        if case .failure(let error) = await task.result { return error }
        return nil
    }
}

/// Reads from a consumer's messages with a deadline per message.
struct MessageReader: Sendable {
    let consumer: KafkaConsumer

    /// Reads messages until `count` were returned or `seconds` passed without one.
    func read(_ count: Int, within seconds: Double) async throws -> [IncomingMessage] {
        let consumer = self.consumer
        return try await withDeadline(seconds, "reading \(count) messages") {
            var result: [IncomingMessage] = []
            var iterator = consumer.messages.makeAsyncIterator()
            while result.count < count, let message = try await iterator.next() {
                result.append(message)
            }
            return result
        }
    }
}
