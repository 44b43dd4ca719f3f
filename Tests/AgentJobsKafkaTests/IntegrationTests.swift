import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

@testable import AgentJobsKafka

/// Integration tier: a real Kafka-protocol broker named by AGENTJOBS_TEST_KAFKA_BROKERS
/// (Tansu via deploy/testenv/tansu.sh in development and CI). Skipped with a reason when the
/// variable is missing, except with CI=true, where every test fails instead.
@Suite(
    "Kafka integration (real broker)",
    .enabled(if: IntegrationEnvironment.shouldRun, IntegrationEnvironment.skipReason),
    .timeLimit(.minutes(5))
)
struct IntegrationTests {
    let logger = testLogger("kafka-integration")

    func makeTopic(_ brokers: [String], prefix: String, partitions: Int32) async throws -> String {
        let topic = uniqueName(prefix)
        let admin = try KafkaAdmin(configuration: IntegrationEnvironment.client(brokers), logger: logger)
        let spec = KafkaTopicSpecification(name: topic, partitionCount: partitions)
        try await admin.createTopics([spec])
        try await admin.createTopics([spec])  // idempotent: TOPIC_ALREADY_EXISTS is fine
        #expect(try await admin.partitionCount(ofTopic: topic) == partitions)
        await admin.shutdown()
        return topic
    }

    func consumer(_ brokers: [String], _ subscription: ConsumerSubscription, capacity: Int = 256) throws
        -> KafkaConsumer
    {
        try KafkaConsumer(
            configuration: .init(
                client: KafkaClientConfiguration(
                    bootstrapServers: brokers,
                    clientID: "agentjobs-tests",
                    properties: IntegrationEnvironment.consumerProperties()
                ),
                subscription: subscription,
                bufferCapacity: capacity,
                autoOffsetReset: .earliest
            ),
            logger: logger
        )
    }

    /// Acceptance 1: 10,000 keyed messages over 1,000 keys; a group consumer is killed mid-stream
    /// with an uncommitted tail and a new one resumes from the committed offsets.
    @Test("keyed messages keep per-key order and none is lost across a consumer kill and restart")
    func orderAndNoLossAcrossConsumerRestart() async throws {
        let brokers = try IntegrationEnvironment.requireBrokers()
        let keyCount = 1_000
        let perKey = 10
        let total = keyCount * perKey
        let topic = try await makeTopic(brokers, prefix: "it-order", partitions: 6)
        let producer = try KafkaProducer(
            configuration: .init(client: IntegrationEnvironment.client(brokers), deliveryTimeout: .seconds(30)),
            logger: logger
        )
        let producing = RunningService { try await producer.run() }

        // Message i carries key i % 1000 and per-key sequence i / 1000, so each key's messages
        // are spread over the whole stream. The stream is produced while consumer A reads.
        @Sendable func message(_ index: Int) -> OutgoingMessage {
            let key = "key-\(index % keyCount)"
            return OutgoingMessage(
                topic: topic, key: key, value: Array("\(key)|\(index / keyCount)".utf8),
                headers: [MessageHeader(key: "ce_id", value: "\(index)")])
        }
        let production = Task {
            var failures = 0
            for chunk in stride(from: 0, to: total, by: 1_000) {
                let results = await producer.sendBatch((chunk..<chunk + 1_000).map(message))
                failures += results.filter { if case .failure = $0 { true } else { false } }.count
            }
            return failures
        }

        let group = uniqueName("it-order-group")
        @Sendable func parse(_ message: IncomingMessage) -> (key: String, sequence: Int) {
            let parts = String(decoding: message.value, as: UTF8.self).split(separator: "|")
            return (String(parts[0]), Int(parts[1]) ?? -1)
        }

        // Consumer A: commits after every 250 handled messages, is killed after 4,100.
        let consumerA = try consumer(brokers, .group(id: group, topics: [topic]))
        let runA = RunningService { try await consumerA.run() }
        struct Seen: Sendable {
            var key: String
            var sequence: Int
            var position: MessagePosition
        }
        let (seenA, committedCountA) = try await withDeadline(120, "consumer A reading 4,100 messages") {
            var seen: [Seen] = []
            var latest: [TopicPartition: MessagePosition] = [:]
            var committedCount = 0
            var iterator = consumerA.messages.makeAsyncIterator()
            while seen.count < 4_100, let message = try await iterator.next() {
                let (key, sequence) = parse(message)
                seen.append(Seen(key: key, sequence: sequence, position: message.position))
                latest[message.position.topicPartition] = message.position
                if seen.count % 250 == 0 {
                    try await consumerA.commit(Array(latest.values))
                    committedCount = seen.count
                }
            }
            return (seen, committedCount)
        }
        #expect(await runA.stop() == nil)  // killed: the tail after the last commit is not committed
        #expect(seenA.count == 4_100)
        #expect(committedCountA == 4_000)
        let committedA = Set(seenA.prefix(committedCountA).map { "\($0.key)|\($0.sequence)" })
        let tailA = Set(seenA.dropFirst(committedCountA).map { "\($0.key)|\($0.sequence)" })

        // Consumer B, same group: resumes from the committed offsets and reads the rest.
        let consumerB = try consumer(brokers, .group(id: group, topics: [topic]))
        let runB = RunningService { try await consumerB.run() }
        let seenB = try await withDeadline(180, "consumer B reading the rest") {
            var seen: [Seen] = []
            var all = Set(seenA.map { "\($0.key)|\($0.sequence)" })
            var iterator = consumerB.messages.makeAsyncIterator()
            while all.count < total, let message = try await iterator.next() {
                let (key, sequence) = parse(message)
                seen.append(Seen(key: key, sequence: sequence, position: message.position))
                all.insert("\(key)|\(sequence)")
            }
            return seen
        }
        let productionFailures = await production.value
        #expect(productionFailures == 0)
        #expect(await runB.stop() == nil)
        #expect(await producing.stop() == nil)

        // Nothing lost.
        let union = Set(seenA.map { "\($0.key)|\($0.sequence)" }).union(seenB.map { "\($0.key)|\($0.sequence)" })
        #expect(union.count == total)
        // At most the uncommitted tail is redelivered, and nothing that was committed.
        let redelivered = Set(seenB.map { "\($0.key)|\($0.sequence)" }).intersection(
            seenA.map { "\($0.key)|\($0.sequence)" })
        #expect(redelivered.isSubset(of: tailA), "redelivered messages must come from A's uncommitted tail")
        #expect(redelivered.isDisjoint(with: committedA))
        #expect(redelivered.count <= tailA.count)
        // And exactly that tail: B resumed precisely at A's committed offsets.
        #expect(redelivered == tailA, "redelivered \(redelivered.count) of a \(tailA.count)-message uncommitted tail")
        // Per-key order: each consumer sees every key's sequence contiguous and increasing, and
        // B starts each key no later than right after A's last committed or seen message.
        for (name, seen) in [("A", seenA), ("B", seenB)] {
            var byKey: [String: [Int]] = [:]
            for entry in seen { byKey[entry.key, default: []].append(entry.sequence) }
            for (key, sequences) in byKey {
                let contiguous = zip(sequences, sequences.dropFirst()).allSatisfy { $1 == $0 + 1 }
                #expect(contiguous, "consumer \(name): key \(key) out of order: \(sequences)")
            }
        }
        var lastA: [String: Int] = [:]
        for entry in seenA { lastA[entry.key] = entry.sequence }
        var firstB: [String: Int] = [:]
        for entry in seenB where firstB[entry.key] == nil { firstB[entry.key] = entry.sequence }
        for (key, first) in firstB {
            #expect(first <= (lastA[key] ?? -1) + 1, "key \(key): gap between A (\(lastA[key] ?? -1)) and B (\(first))")
        }
        // Positions within a partition only move forward for each consumer.
        for seen in [seenA, seenB] {
            var last: [TopicPartition: Int64] = [:]
            for entry in seen {
                #expect(entry.position.offset > last[entry.position.topicPartition] ?? -1)
                last[entry.position.topicPartition] = entry.position.offset
            }
        }
    }

    /// Acceptance 2: the orchestrator pattern: manual assignment of murmur2(host) % n, key
    /// filter, committed offsets under the host's own group, resume after restart.
    @Test("a manual-assignment consumer for host H receives exactly H's messages, also after a restart")
    func manualAssignmentForHost() async throws {
        let brokers = try IntegrationEnvironment.requireBrokers()
        let partitionCount: Int32 = 4
        let topic = try await makeTopic(brokers, prefix: "it-dispatch", partitions: partitionCount)
        let producer = try KafkaProducer(
            configuration: .init(client: IntegrationEnvironment.client(brokers)), logger: logger)
        let producing = RunningService { try await producer.run() }

        let hosts = (0..<40).map { "host-\($0)" }
        let host = "host-7"
        let partition = KafkaPartitioner.partition(forKey: host, partitionCount: partitionCount)
        let neighbours = hosts.filter {
            $0 != host && KafkaPartitioner.partition(forKey: $0, partitionCount: partitionCount) == partition
        }
        #expect(!neighbours.isEmpty, "the key filter must have other hosts to skip in the same partition")

        let batch = (0..<25).flatMap { sequence in
            hosts.map { OutgoingMessage(topic: topic, key: $0, value: Array("\($0)|\(sequence)".utf8)) }
        }
        let results = await producer.sendBatch(batch)
        for (message, result) in zip(batch, results) {
            let position = try result.get()
            // librdkafka's murmur2_random placed it where our pure-Swift murmur2 says.
            #expect(
                position.topicPartition.partition
                    == KafkaPartitioner.partition(forKey: message.key!, partitionCount: partitionCount))
        }

        let group = uniqueName("it-orchestrator-\(host)")
        let subscription = ConsumerSubscription.assignment(
            groupID: group,
            partitions: [TopicPartition(topic: topic, partition: partition)],
            keyFilter: Array(host.utf8)
        )
        func sequences(_ messages: [IncomingMessage]) -> [Int] {
            messages.map { Int(String(decoding: $0.value, as: UTF8.self).split(separator: "|")[1]) ?? -1 }
        }

        let first = try consumer(brokers, subscription)
        let firstRun = RunningService { try await first.run() }
        let firstMessages = try await MessageReader(consumer: first).read(12, within: 60)
        #expect(firstMessages.allSatisfy { $0.keyString == host && $0.partition == partition })
        #expect(sequences(firstMessages) == Array(0..<12))
        try await first.commit(firstMessages[9])  // 10 and 11 stay uncommitted
        #expect(await firstRun.stop() == nil)

        let second = try consumer(brokers, subscription)
        let secondRun = RunningService { try await second.run() }
        let rest = try await MessageReader(consumer: second).read(15, within: 60)
        #expect(rest.allSatisfy { $0.keyString == host })
        #expect(sequences(rest) == Array(10..<25), "resumes right after the committed message")
        try await second.commit(rest[rest.count - 1])

        // New messages for H and for a neighbour in the same partition: only H's arrive.
        let more = (25..<30).flatMap { sequence in
            [host, neighbours[0]].map { OutgoingMessage(topic: topic, key: $0, value: Array("\($0)|\(sequence)".utf8)) }
        }
        for result in await producer.sendBatch(more) { _ = try result.get() }
        let live = try await MessageReader(consumer: second).read(5, within: 60)
        #expect(live.allSatisfy { $0.keyString == host })
        #expect(sequences(live) == Array(25..<30))
        // Nothing else is pending for H.
        await #expect(throws: TimeoutError.self) { _ = try await MessageReader(consumer: second).read(1, within: 3) }
        try await second.commit(live[live.count - 1])
        #expect(second.assignment == [TopicPartition(topic: topic, partition: partition)])
        #expect(await secondRun.stop() == nil)
        #expect(await producing.stop() == nil)
    }

    /// Acceptance 3: a producer facing a stopped broker fails within its delivery timeout, and
    /// works again once the broker is back. Uses a private Tansu so the shared one is untouched.
    @Test("a producer facing a stopped broker fails within its timeout and recovers when it returns")
    func producerSurvivesBrokerRestart() async throws {
        _ = try IntegrationEnvironment.requireBrokers()
        let tansu = TansuProcess()
        do {
            try await brokerRestartScenario(tansu)
        } catch {
            await tansu.tearDown()
            throw error
        }
        await tansu.tearDown()
    }

    private func brokerRestartScenario(_ tansu: TansuProcess) async throws {
        let address = try await tansu.start()
        let brokers = [address]
        let topic = try await makeTopic(brokers, prefix: "it-restart", partitions: 1)
        let deliveryTimeout = Duration.seconds(3)
        let producer = try KafkaProducer(
            configuration: .init(
                client: .init(
                    bootstrapServers: brokers,
                    properties: IntegrationEnvironment.debugProperties()
                ),
                deliveryTimeout: deliveryTimeout
            ),
            logger: logger
        )
        let producing = RunningService { try await producer.run() }
        _ = try await producer.send(OutgoingMessage(topic: topic, key: "host-1", value: Array("before".utf8)))

        await tansu.stop()
        let clock = ContinuousClock()
        let start = clock.now
        do {
            _ = try await producer.send(OutgoingMessage(topic: topic, key: "host-1", value: Array("while-down".utf8)))
            Issue.record("a send to a stopped broker must fail")
        } catch let error as KafkaError {
            #expect(error.code == .deliveryTimedOut, "got \(error)")
        }
        let elapsed = clock.now - start
        #expect(
            elapsed >= .seconds(2) && elapsed < deliveryTimeout + .seconds(5),
            "failed after \(elapsed); timeout \(deliveryTimeout)")

        // Back on the same address. Tansu keeps topics in memory, so the restarted broker has
        // to be given the topic again.
        let again = try await tansu.start()
        #expect(again == address)
        _ = try await makeTopic(brokers, prefix: "it-restart-probe", partitions: 1)
        let admin = try KafkaAdmin(configuration: .init(bootstrapServers: brokers), logger: logger)
        try await admin.createTopics([.init(name: topic, partitionCount: 1)])
        await admin.shutdown()

        let recovered = try await withDeadline(60, "producer recovery after the broker returned") {
            var attempts = 0
            while true {
                attempts += 1
                try Task.checkCancellation()
                do {
                    return (
                        try await producer.send(
                            OutgoingMessage(topic: topic, key: "host-1", value: Array("after".utf8))), attempts
                    )
                } catch let error as KafkaError where error.code == .deliveryTimedOut || error.code == .deliveryFailed {
                    continue
                }
            }
        }
        #expect(recovered.0.topicPartition.topic == topic)
        #expect(await producing.stop() == nil)
    }

    /// The service wiring used in production: a ServiceGroup starts the producer and a group
    /// consumer; graceful shutdown ends the message sequence, leaves the group and closes.
    @Test("graceful shutdown through a ServiceGroup ends the messages and leaves the group")
    func gracefulShutdownThroughServiceGroup() async throws {
        let brokers = try IntegrationEnvironment.requireBrokers()
        let topic = try await makeTopic(brokers, prefix: "it-lifecycle", partitions: 2)
        let producer = try KafkaProducer(
            configuration: .init(client: IntegrationEnvironment.client(brokers)), logger: logger)
        let consumer = try consumer(brokers, .group(id: uniqueName("it-lifecycle"), topics: [topic]))
        let group = ServiceGroup(services: [producer, consumer], logger: logger)
        let running = Task { try await group.run() }

        _ = try await producer.send(
            OutgoingMessage(
                topic: topic, key: "run-1", value: Array("x".utf8),
                headers: [MessageHeader(key: "ce_type", value: "RunStarted")]))
        let received = try await MessageReader(consumer: consumer).read(1, within: 60)
        #expect(received.first?.header("ce_type")?.stringValue == "RunStarted")
        try await consumer.commit(received[0])
        #expect(!consumer.assignment.isEmpty)

        await group.triggerGracefulShutdown()
        try await running.value
        // The sequence ended; the group was left (no partitions owned); commits are refused.
        var iterator = consumer.messages.makeAsyncIterator()
        #expect(try await iterator.next() == nil)
        #expect(consumer.assignment.isEmpty)
        await #expect(throws: KafkaError.self) { try await consumer.commit(received[0]) }
    }
}
