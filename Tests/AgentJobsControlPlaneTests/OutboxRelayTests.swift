import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@Suite("Outbox relay")
struct OutboxRelayTests {
    /// A store with one host and `count` triggered runs (each with its dispatch in the outbox).
    static func store(runs count: Int) async throws -> (SQLiteStore, URL, String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-relay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = try SQLiteStore(path: directory.appendingPathComponent("db.sqlite").path)
        let now = Date()
        let (_, registration) = try await store.createRegistrationToken(expiresAt: now.addingTimeInterval(60), now: now)
        let host = try await store.registerHost(
            registrationTokenHash: registration.hash, name: "h", managedAgents: [.datahealth],
            credential: Secret.generate(prefix: "ajh"), now: now)
        for index in 0..<count {
            let job = try await store.createJob(
                JobDefinition(
                    name: "j\(index)", hostId: host.id, agentType: .datahealth, parameters: .file(fileName: "f")),
                now: now)
            _ = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: now)
        }
        return (store, directory, host.id)
    }

    @Test("drain publishes every row in order through the embedded log, signed, and marks them all sent")
    func drainsInOrder() async throws {
        let (store, directory, hostId) = try await Self.store(runs: 1_500)
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = SQLiteMessageLog(sharing: store.database)
        let key = DispatchSigningKey()
        var configuration = OutboxRelay.Configuration()
        configuration.batchSize = 500
        let relay = OutboxRelay(
            store: store, producer: SQLiteMessageProducer(log: log), signingKey: key, wakeUps: OutboxSignal(),
            configuration: configuration, logger: Logger(label: "test"))
        #expect(try await relay.drain() == 1_500)
        #expect(try await store.pendingOutbox(limit: 10).isEmpty)
        #expect(try await relay.drain() == 0)

        // The host's partition holds the 1,500 dispatches in outbox order, each verifying.
        let partition = try await log.partition(forKey: Array(hostId.utf8), inTopic: Topic.dispatch)
        let consumer = SQLiteMessageConsumer(
            log: log,
            configuration: SQLiteMessageConsumerConfiguration(
                subscription: .assignment(
                    groupID: "test", partitions: [TopicPartition(topic: Topic.dispatch, partition: partition)])),
            logger: Logger(label: "test"))
        let reading = Task { try await consumer.run() }
        var ids: [Int64] = []
        for try await message in consumer.messages {
            let wire = try WireMessage(message)
            try key.verifier.verify(wire)
            ids.append(Int64(wire.envelope.id.dropFirst("outbox-".count)) ?? -1)
            if ids.count == 1_500 { break }
        }
        reading.cancel()
        _ = await reading.result
        #expect(ids == ids.sorted())
        #expect(Set(ids).count == 1_500)
        await log.close()
        await store.close()
    }

    /// Fails the messages whose run id is in `failing`, acknowledges the rest.
    final class FlakyProducer: MessageProducer, Sendable {
        let failing: Mutex<Set<String>>
        let published = Mutex<[String]>([])
        init(failing: Set<String>) { self.failing = Mutex(failing) }

        func send(_ message: OutgoingMessage) async throws -> MessagePosition {
            try await sendBatch([message])[0].get()
        }

        func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
            messages.map { message in
                let subject = message.headers.first { $0.key == WireHeader.subject }?.stringValue ?? ""
                if failing.withLock({ $0.contains(subject) }) { return .failure(CancellationError()) }
                published.withLock { $0.append(subject) }
                return .success(MessagePosition(topic: message.topic, partition: 0, offset: 0))
            }
        }
    }

    /// Takes every batch and never confirms its delivery within the test: a broker that is down.
    final class UnconfirmedProducer: MessageProducer, Sendable {
        let taken = Mutex(0)

        func send(_ message: OutgoingMessage) async throws -> MessagePosition {
            try await sendBatch([message])[0].get()
        }

        func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
            await enqueueBatch(messages).results()
        }

        func enqueueBatch(_ messages: [OutgoingMessage]) async -> PendingDelivery {
            taken.withLock { $0 += messages.count }
            return PendingDelivery {
                try? await Task.sleep(for: .seconds(120))
                return messages.map { _ in .failure(CancellationError()) }
            }
        }
    }

    @Test("a relay stopped while the broker does not confirm exits at once and leaves the rows pending")
    func stopWithUnconfirmedDelivery() async throws {
        let (store, directory, _) = try await Self.store(runs: 3)
        defer { try? FileManager.default.removeItem(at: directory) }
        let producer = UnconfirmedProducer()
        let relay = OutboxRelay(
            store: store, producer: producer, signingKey: DispatchSigningKey(), logger: Logger(label: "test"))
        let group = ServiceGroup(services: [relay], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        while producer.taken.withLock({ $0 }) < 3 { try await Task.sleep(for: .milliseconds(20)) }
        let stopping = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await running.value
        let stopped = ContinuousClock.now - stopping
        #expect(stopped < .seconds(60), "the relay waited \(stopped) for deliveries the broker never confirmed")
        #expect(try await store.pendingOutbox(limit: 10).count == 3, "unconfirmed rows stay pending")
        await store.close()
    }

    @Test(
        "a row that fails holds back the later rows of its key, also in the batch in flight after it, and ends the pass; the next pass sends them in order",
        arguments: [5000, 3])
    func failureKeepsOrder(batchSize: Int) async throws {
        let (store, directory, _) = try await Self.store(runs: 10)
        defer { try? FileManager.default.removeItem(at: directory) }
        let rows = try await store.pendingOutbox(limit: 10)
        let third = try #require(rows[2].runId)
        let producer = FlakyProducer(failing: [third])
        var configuration = OutboxRelay.Configuration()
        configuration.batchSize = batchSize
        let relay = OutboxRelay(
            store: store, producer: producer, signingKey: DispatchSigningKey(), wakeUps: OutboxSignal(),
            configuration: configuration, logger: Logger(label: "test"))
        // All rows share the host's key: everything after the failed row stays pending.
        #expect(try await relay.drain() == 2)
        #expect(try await store.pendingOutbox(limit: 10).map(\.sequence) == Array(rows.map(\.sequence).dropFirst(2)))
        if batchSize == 3 {
            // The second batch was handed over before the first one's failure was known.
            #expect(producer.published.withLock { $0 }.count == 5)
        }
        producer.failing.withLock { $0 = [] }
        #expect(try await relay.drain() == 8)
        #expect(try await store.pendingOutbox(limit: 10).isEmpty)
        await store.close()
    }
}
