import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

@testable import AgentJobsKafka

/// Every implementation of the message transport protocols.
enum TransportKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    /// The durable log in the embedded SQLite database (`AgentJobsStore.SQLiteMessageLog`).
    case embedded
    /// Apache Kafka through librdkafka, against the broker named by AGENTJOBS_TEST_KAFKA_BROKERS.
    case kafka

    var testDescription: String { rawValue }

    /// The kinds the conformance tests run against: the Kafka case needs a broker, or CI (where
    /// it then fails loudly). Locally without a broker it is left out, and the skipped test
    /// ``TransportConformanceTests/kafkaCaseRuns()`` says why.
    static var underTest: [TransportKind] {
        KafkaBroker.shouldRun ? allCases : [.embedded]
    }
}

/// The Kafka case's broker: AGENTJOBS_TEST_KAFKA_BROKERS (`host:port[,host:port]`). Without it
/// the Kafka case is skipped with a reason, except in CI (`CI=true`), where it fails so that a
/// CI run can never pass by silently skipping the broker.
enum KafkaBroker {
    static let service = RequiredService.kafkaBroker
    static var brokers: [String]? { service.value.map(RequiredService.brokerList) }
    /// Run the Kafka case when a broker is named, or in CI (to fail loudly without one).
    static var shouldRun: Bool { service.shouldRun }
    static var skipReason: Comment { service.skipReason }

    /// The broker list; fails in CI without one, and otherwise cancels the test case (callers
    /// normally never get here without a broker: see ``TransportKind/underTest``).
    static func require() throws -> [String] {
        RequiredService.brokerList(try service.require())
    }

    static func client(_ brokers: [String], properties: [String: String] = [:]) -> KafkaClientConfiguration {
        KafkaClientConfiguration(
            bootstrapServers: brokers, clientID: "agentjobs-transport-tests", properties: properties)
    }

    /// Short session timeout so that a group member that left is noticed fast on Tansu.
    /// AGENTJOBS_TEST_KAFKA_DEBUG=cgrp,… turns on librdkafka debug contexts (seen with
    /// AGENTJOBS_TEST_LOG_LEVEL=debug).
    static var consumerProperties: [String: String] {
        var properties = ["session.timeout.ms": "2000", "heartbeat.interval.ms": "500"]
        properties["debug"] = ProcessInfo.processInfo.environment["AGENTJOBS_TEST_KAFKA_DEBUG"]
        return properties
    }
}

/// Waits until `condition` holds, checking every few milliseconds; throws ``TimeoutError``
/// after `seconds`. The deadline is a safety net, never the assertion.
func waitUntil(_ seconds: Double, _ what: String, _ condition: @escaping @Sendable () -> Bool) async throws {
    try await withDeadline(seconds, what) {
        while !condition() {
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// A service's `run()` in a background task, stopped by cancellation (which both consumers
/// and the Kafka producer treat like graceful shutdown).
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

/// A running consumer of either kind, seen through what the conformance tests need.
struct TestConsumer: Sendable {
    let capacity: Int
    private let readBody: @Sendable (Int, Double) async throws -> [IncomingMessage]
    private let commitBody: @Sendable ([MessagePosition]) async throws -> Void
    private let bufferedBody: @Sendable () -> Int
    private let assignmentBody: @Sendable () -> Set<TopicPartition>
    private let caughtUpBody: @Sendable () -> Bool?
    private let running: RunningService

    init<Consumer: MessageConsumer & Service>(
        _ consumer: Consumer,
        capacity: Int,
        buffered: @escaping @Sendable () -> Int,
        assignment: @escaping @Sendable () -> Set<TopicPartition>
    ) {
        self.capacity = capacity
        readBody = { count, seconds in
            try await withDeadline(seconds, "reading \(count) messages") {
                var result: [IncomingMessage] = []
                var iterator = consumer.messages.makeAsyncIterator()
                while result.count < count, let message = try await iterator.next() {
                    result.append(message)
                }
                return result
            }
        }
        commitBody = { try await consumer.commit($0) }
        bufferedBody = buffered
        assignmentBody = assignment
        caughtUpBody = { consumer.hasCaughtUp }
        running = RunningService { try await consumer.run() }
    }

    /// Reads `count` messages, failing with ``TimeoutError`` when they do not arrive in `seconds`.
    func read(_ count: Int, within seconds: Double = 30) async throws -> [IncomingMessage] {
        try await readBody(count, seconds)
    }

    func commit(_ positions: [MessagePosition]) async throws { try await commitBody(positions) }

    func commit(_ message: IncomingMessage) async throws { try await commitBody([message.position]) }

    /// Messages the consumer holds in its buffer right now.
    var bufferedCount: Int { bufferedBody() }

    /// Partitions the consumer owns right now.
    var assignment: Set<TopicPartition> { assignmentBody() }

    /// What the consumer says of having read to the end of its partitions.
    var hasCaughtUp: Bool? { caughtUpBody() }

    /// Shuts the consumer down and returns the error `run()` ended with, if any.
    @discardableResult
    func stop() async -> (any Error)? { await running.stop() }
}

/// One transport, opened fresh for one test: a producer and a way to make topics and consumers.
final class TransportHarness: Sendable {
    let kind: TransportKind
    let producer: any MessageProducer
    let logger = testLogger("transport-conformance")
    private let embedded: (store: SQLiteStore, log: SQLiteMessageLog, directory: URL)?
    private let brokers: [String]?
    private let producerService: RunningService?

    private init(
        kind: TransportKind, producer: any MessageProducer,
        embedded: (store: SQLiteStore, log: SQLiteMessageLog, directory: URL)?, brokers: [String]?,
        producerService: RunningService?
    ) {
        self.kind = kind
        self.producer = producer
        self.embedded = embedded
        self.brokers = brokers
        self.producerService = producerService
    }

    /// Opens the transport; for Kafka, skips or fails the test case when no broker is named.
    static func open(_ kind: TransportKind) async throws -> TransportHarness {
        switch kind {
        case .embedded:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "agentjobs-transport-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            // The log shares the store's database, as in the embedded shape.
            let store = try SQLiteStore(path: directory.appendingPathComponent("db.sqlite").path, durableCommits: false)
            let log = SQLiteMessageLog(sharing: store.database)
            return TransportHarness(
                kind: kind, producer: SQLiteMessageProducer(log: log), embedded: (store, log, directory), brokers: nil,
                producerService: nil)
        case .kafka:
            let brokers = try KafkaBroker.require()
            let producer = try KafkaProducer(
                configuration: .init(client: KafkaBroker.client(brokers), deliveryTimeout: .seconds(30)),
                logger: testLogger("transport-conformance-producer"))
            let service = RunningService { try await producer.run() }
            return TransportHarness(
                kind: kind, producer: producer, embedded: nil, brokers: brokers, producerService: service)
        }
    }

    /// Stops the producer and removes what the transport left behind.
    func close() async {
        if let producerService {
            if let error = await producerService.stop() {
                Issue.record("the producer stopped with \(error)")
            }
        }
        if let embedded {
            await embedded.store.close()
            try? FileManager.default.removeItem(at: embedded.directory)
        }
    }

    /// The embedded log (`nil` for Kafka).
    var log: SQLiteMessageLog? { embedded?.log }

    /// Creates a topic with a name no other test uses.
    func makeTopic(_ prefix: String, partitions: Int32) async throws -> String {
        let topic = uniqueName("tc-\(prefix)")
        switch kind {
        case .embedded:
            let count = try await embedded!.log.createTopic(topic, partitionCount: partitions)
            #expect(count == partitions)
        case .kafka:
            let admin = try KafkaAdmin(configuration: KafkaBroker.client(brokers!), logger: logger)
            try await admin.createTopics([KafkaTopicSpecification(name: topic, partitionCount: partitions)])
            #expect(try await admin.partitionCount(ofTopic: topic) == partitions)
            await admin.shutdown()
        }
        return topic
    }

    /// Creates and starts a consumer.
    func consumer(_ subscription: ConsumerSubscription, capacity: Int = 256) throws -> TestConsumer {
        switch kind {
        case .embedded:
            let consumer = SQLiteMessageConsumer(
                log: embedded!.log,
                configuration: .init(subscription: subscription, bufferCapacity: capacity, leaseDuration: .seconds(5)),
                logger: logger)
            return TestConsumer(
                consumer, capacity: capacity, buffered: { consumer.bufferedCount },
                assignment: { consumer.assignment })
        case .kafka:
            let consumer = try KafkaConsumer(
                configuration: .init(
                    client: KafkaBroker.client(brokers!, properties: KafkaBroker.consumerProperties),
                    subscription: subscription,
                    bufferCapacity: capacity,
                    autoOffsetReset: .earliest),
                logger: logger)
            return TestConsumer(
                consumer, capacity: capacity, buffered: { consumer.bufferedCountForTesting },
                assignment: { consumer.assignment })
        }
    }

    /// Sends `messages` as one batch and returns their positions, failing on any error.
    @discardableResult
    func send(_ messages: [OutgoingMessage]) async throws -> [MessagePosition] {
        try await producer.sendBatch(messages).map { try $0.get() }
    }
}

/// Opens a harness for `kind`, runs `body`, and closes the harness whatever happens.
func withTransport(
    _ kind: TransportKind, _ body: (TransportHarness) async throws -> Void
) async throws {
    let harness = try await TransportHarness.open(kind)
    do {
        try await body(harness)
    } catch {
        await harness.close()
        throw error
    }
    await harness.close()
}
