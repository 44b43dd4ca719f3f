import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

@testable import AgentJobsKafka

/// Component tier: real producer/consumer/admin code against librdkafka's in-process mock
/// cluster (no network service needed).
@Suite("Kafka clients against librdkafka's mock cluster", .timeLimit(.minutes(3)))
struct MockClusterTests {
    let logger = testLogger("mock-cluster-tests")

    func producer(_ cluster: KafkaMockCluster, deliveryTimeout: Duration = .seconds(10)) throws -> KafkaProducer {
        try KafkaProducer(
            configuration: .init(
                client: .init(
                    bootstrapServers: cluster.bootstrapServers,
                    properties: IntegrationEnvironment.debugProperties()
                ),
                deliveryTimeout: deliveryTimeout
            ),
            logger: logger
        )
    }

    func consumer(_ cluster: KafkaMockCluster, _ subscription: ConsumerSubscription, capacity: Int = 64) throws
        -> KafkaConsumer
    {
        try KafkaConsumer(
            configuration: .init(
                client: .init(
                    bootstrapServers: cluster.bootstrapServers, properties: IntegrationEnvironment.consumerProperties()),
                subscription: subscription,
                bufferCapacity: capacity
            ),
            logger: logger
        )
    }

    @Test("sends return positions after acknowledgement; a group consumer reads keys, values and headers")
    func roundTrip() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("events", partitions: 3)
        let producer = try producer(cluster)
        let producing = RunningService { try await producer.run() }

        let messages = (0..<30).map { index in
            OutgoingMessage(
                topic: "events",
                key: "run-\(index % 5)",
                value: Array("payload-\(index)".utf8),
                headers: [
                    MessageHeader(key: "ce_type", value: "RunStarted"), MessageHeader(key: "ce_id", value: "\(index)"),
                    MessageHeader(key: "empty", value: nil),
                ]
            )
        }
        let single = try await producer.send(messages[0])
        #expect(single.topicPartition.partition == KafkaPartitioner.partition(forKey: "run-0", partitionCount: 3))
        let results = await producer.sendBatch(Array(messages.dropFirst()))
        let positions = try results.map { try $0.get() }
        for (message, position) in zip(messages.dropFirst(), positions) {
            #expect(
                position.topicPartition.partition == KafkaPartitioner.partition(forKey: message.key!, partitionCount: 3)
            )
        }

        let consumer = try consumer(cluster, .group(id: uniqueName("group"), topics: ["events"]))
        let consuming = RunningService { try await consumer.run() }
        let received = try await MessageReader(consumer: consumer).read(30, within: 30)
        #expect(received.count == 30)
        #expect(
            Set(received.map { String(decoding: $0.value, as: UTF8.self) }) == Set((0..<30).map { "payload-\($0)" }))
        let first = try #require(received.first { $0.value == Array("payload-7".utf8) })
        #expect(first.keyString == "run-2")
        #expect(first.header("ce_type")?.stringValue == "RunStarted")
        #expect(first.header("ce_id")?.stringValue == "7")
        #expect(first.header("empty") != nil && first.header("empty")?.value == nil)
        #expect(first.timestamp != nil)
        // Per key, offsets and payload order agree.
        for key in 0..<5 {
            let ofKey = received.filter { $0.keyString == "run-\(key)" }
            #expect(ofKey.map(\.offset) == ofKey.map(\.offset).sorted())
            #expect(
                ofKey.map { String(decoding: $0.value, as: UTF8.self) }
                    == stride(from: key, to: 30, by: 5).map { "payload-\($0)" })
        }
        #expect(await consuming.stop() == nil)
        #expect(await producing.stop() == nil)
    }

    @Test("a manual-assignment consumer filters by key and resumes from its committed offset")
    func manualAssignmentResumes() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("dispatch", partitions: 4)
        let producer = try producer(cluster)
        let producing = RunningService { try await producer.run() }
        let host = "host-17"
        let partition = KafkaPartitioner.partition(forKey: host, partitionCount: 4)
        let hosts = (0..<20).map { "host-\($0)" }
        let batch = (0..<10).flatMap { sequence in
            hosts.map { OutgoingMessage(topic: "dispatch", key: $0, value: Array("\(sequence)".utf8)) }
        }
        for result in await producer.sendBatch(batch) { _ = try result.get() }

        let group = uniqueName("orchestrator")
        let subscription = ConsumerSubscription.assignment(
            groupID: group,
            partitions: [TopicPartition(topic: "dispatch", partition: partition)],
            keyFilter: Array(host.utf8)
        )
        let first = try consumer(cluster, subscription)
        let firstRun = RunningService { try await first.run() }
        let firstBatch = try await MessageReader(consumer: first).read(6, within: 20)
        #expect(firstBatch.allSatisfy { $0.keyString == host })
        #expect(firstBatch.map { String(decoding: $0.value, as: UTF8.self) } == (0..<6).map(String.init))
        let committed = try await first.commitPositions([firstBatch[3].position])
        #expect(committed == [TopicPartition(topic: "dispatch", partition: partition): firstBatch[3].offset + 1])
        #expect(await firstRun.stop() == nil)
        // Closed: commits are refused with a stable code.
        await #expect(throws: KafkaError.self) { try await first.commit([firstBatch[5].position]) }

        let second = try consumer(cluster, subscription)
        let secondRun = RunningService { try await second.run() }
        let rest = try await MessageReader(consumer: second).read(6, within: 20)
        #expect(rest.allSatisfy { $0.keyString == host })
        // Resumes after the committed message: the uncommitted tail (4, 5) is read again.
        #expect(rest.map { String(decoding: $0.value, as: UTF8.self) } == (4..<10).map(String.init))
        #expect(await secondRun.stop() == nil)
        #expect(await producing.stop() == nil)
    }

    @Test("a producer facing a broker that stopped answering fails within its delivery timeout and recovers")
    func producerTimesOutAndRecovers() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("events", partitions: 1)
        let producer = try producer(cluster, deliveryTimeout: .seconds(2))
        let producing = RunningService { try await producer.run() }
        _ = try await producer.send(OutgoingMessage(topic: "events", key: "a", value: [1]))

        cluster.setResponseDelay(ofBroker: 1, .seconds(30))
        let clock = ContinuousClock()
        let start = clock.now
        do {
            _ = try await producer.send(OutgoingMessage(topic: "events", key: "a", value: [2]))
            Issue.record("a send to a broker that does not answer must fail")
        } catch let error as KafkaError {
            #expect(error.code == .deliveryTimedOut)
        }
        let elapsed = clock.now - start
        // librdkafka scans for timed-out messages about once a second; allow for a loaded machine.
        #expect(elapsed < .seconds(2) + .seconds(5), "failed after \(elapsed), configured 2 s")

        cluster.setResponseDelay(ofBroker: 1, .zero)
        let recovered = try await withDeadline(30, "producer recovery") {
            while true {
                if let position = try? await producer.send(OutgoingMessage(topic: "events", key: "a", value: [3])) {
                    return position
                }
            }
        }
        #expect(recovered.offset >= 1)
        #expect(await producing.stop() == nil)
    }

    @Test(
        "after a fatal error (a broker that lost the producer's state) the producer replaces its handle and sends again"
    )
    func fatalErrorReplacesTheHandle() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("events", partitions: 1)
        let producer = try producer(cluster)
        let producing = RunningService { try await producer.run() }
        let first = try await producer.send(OutgoingMessage(topic: "events", key: "a", value: [1]))

        producer.raiseFatalErrorForTesting()
        // Sends fail with the fatal error until the poll loop has replaced the handle; then they
        // are delivered again, after the first one.
        let after = try await withDeadline(30, "a send after the fatal error") {
            while true {
                do {
                    return try await producer.send(OutgoingMessage(topic: "events", key: "a", value: [2]))
                } catch let error as KafkaError where error.code == .fatal {
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
        }
        #expect(after.offset > first.offset)
        // run() went on: it ends without error at the stop (it used to end at once with the fatal error).
        #expect(await producing.stop() == nil)
    }

    @Test("graceful shutdown flushes in-flight sends, then refuses new ones")
    func gracefulShutdownFlushes() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("events", partitions: 2)
        let producer = try producer(cluster)
        let group = ServiceGroup(services: [producer], logger: logger)
        let running = Task { try await group.run() }
        let inFlight = Task {
            await producer.sendBatch(
                (0..<2000).map { OutgoingMessage(topic: "events", key: "k\($0 % 7)", value: Array("\($0)".utf8)) })
        }
        try await Task.sleep(for: .milliseconds(20))
        await group.triggerGracefulShutdown()
        try await running.value
        let results = await inFlight.value
        // Every send completed one way or the other; the flush delivered them.
        #expect(results.count == 2000)
        // Each one was delivered by the flush, or (if shutdown began before it was enqueued)
        // refused with producerShutDown; none hangs or fails otherwise.
        var delivered = 0
        for result in results {
            switch result {
            case .success: delivered += 1
            case .failure(let error as KafkaError): #expect(error.code == .producerShutDown)
            case .failure(let error): Issue.record("unexpected error \(error)")
            }
        }
        #expect(delivered > 0)
        do {
            _ = try await producer.send(OutgoingMessage(topic: "events", key: "k", value: [0]))
            Issue.record("send after shutdown must fail")
        } catch let error as KafkaError {
            #expect(error.code == .producerShutDown)
        }
        await #expect(throws: KafkaError.self) { try await producer.run() }
    }

    @Test("a rebalance between two group members loses nothing and never moves a commit backwards")
    func rebalanceLosesNothing() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("events", partitions: 4)
        let producer = try producer(cluster)
        let producing = RunningService { try await producer.run() }
        let total = 400
        for result in await producer.sendBatch(
            (0..<total).map { OutgoingMessage(topic: "events", key: "run-\($0 % 40)", value: Array("\($0)".utf8)) })
        {
            _ = try result.get()
        }
        let group = uniqueName("aggregator")
        let seen = SeenMessages()

        // Handles one message at a time and commits it, as the aggregator does after its DB commit.
        @Sendable func handle(_ consumer: KafkaConsumer, name: String, until stop: @escaping @Sendable () async -> Bool)
            async throws
        {
            var iterator = consumer.messages.makeAsyncIterator()
            while !(await stop()), let message = try await iterator.next() {
                let value = String(decoding: message.value, as: UTF8.self)
                await seen.record(value, by: name)
                // The "effect": slow while only one member has read, so that B joins while A still
                // has work; full speed afterwards, so that a loaded machine (whose starved task
                // pool stretches every sleep) still finishes well within the deadline.
                if await seen.readers.count < 2 { try await Task.sleep(for: .milliseconds(25)) }
                do {
                    // Nothing committed: the partition was revoked meanwhile, and its next owner
                    // reads the message again (as after a refused commit).
                    if try await !Self.commit(message, by: consumer) {
                        await seen.recordCommitFailure()
                    }
                } catch let error as KafkaError where error.code == .commitFailed {
                    // A commit racing the rebalance may be refused by the coordinator: the
                    // message is then read again by the partition's next owner.
                    await seen.recordCommitFailure()
                }
                await seen.recordHandled(value)
            }
        }

        let consumerA = try consumer(cluster, .group(id: group, topics: ["events"]), capacity: 16)
        let runA = RunningService { try await consumerA.run() }
        let readingA = Task { try await handle(consumerA, name: "A") { await seen.handledCount >= total } }
        try await withDeadline(60, "A reading its first messages") {
            while await seen.count < 50 { try await Task.sleep(for: .milliseconds(20)) }
        }
        // B joins: the group rebalances and A gives up some partitions.
        let consumerB = try consumer(cluster, .group(id: group, topics: ["events"]), capacity: 16)
        let runB = RunningService { try await consumerB.run() }
        let readingB = Task { try await handle(consumerB, name: "B") { await seen.handledCount >= total } }
        try await withDeadline(90, "A and B reading everything") {
            // Handled means committed (or refused by the rebalance): stopping a member between a
            // message's read and its commit would leave it for the next owner.
            while await seen.handledCount < total { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(await seen.count == total)
        #expect(await seen.readers == ["A", "B"], "both members must have owned partitions")
        #expect(await runA.stop() == nil)
        #expect(await runB.stop() == nil)
        _ = await readingA.result
        _ = await readingB.result

        // A third member finds nothing left: every handled message stayed committed (no lost
        // commit, no commit moved backwards by a member that had lost the partition).
        let consumerC = try consumer(cluster, .group(id: group, topics: ["events"]))
        let runC = RunningService { try await consumerC.run() }
        let leftovers = try? await MessageReader(consumer: consumerC).read(1, within: 4)
        let failures = await seen.commitFailures
        #expect((leftovers ?? []).isEmpty || failures > 0, "re-read \(leftovers ?? []) without any failed commit")
        #expect(await runC.stop() == nil)
        #expect(await producing.stop() == nil)
    }

    /// Commits one handled message; false when nothing was committed (its partition is no longer
    /// the consumer's). Untyped `throws`, for the caller's `catch … as KafkaError`.
    static func commit(_ message: IncomingMessage, by consumer: KafkaConsumer) async throws -> Bool {
        try await !consumer.commitPositions([message.position]).isEmpty
    }

    @Test("a slow reader bounds the buffer; nothing is lost")
    func boundedBuffer() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("events", partitions: 1)
        let producer = try producer(cluster)
        let producing = RunningService { try await producer.run() }
        for result in await producer.sendBatch(
            (0..<500).map { OutgoingMessage(topic: "events", key: "k", value: Array("\($0)".utf8)) })
        {
            _ = try result.get()
        }
        let consumer = try consumer(
            cluster,
            .assignment(groupID: uniqueName("slow"), partitions: [TopicPartition(topic: "events", partition: 0)]),
            capacity: 8
        )
        let consuming = RunningService { try await consumer.run() }
        var seen: [Int64] = []
        var iterator = consumer.messages.makeAsyncIterator()
        while seen.count < 500, let message = try await iterator.next() {
            seen.append(message.offset)
            #expect(consumer.bufferedCountForTesting <= 8)
            if seen.count % 100 == 0 { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(seen == (0..<500).map(Int64.init))
        try await consumer.commit([
            IncomingMessage(topic: "events", partition: 0, offset: 499, key: nil, value: []).position
        ])
        #expect(await consuming.stop() == nil)
        #expect(await producing.stop() == nil)
    }

    @Test("admin reads partition counts; unknown topics are nil")
    func adminReadsPartitionCounts() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("agentjobs.dispatch", partitions: 6)
        let admin = try KafkaAdmin(configuration: .init(bootstrapServers: cluster.bootstrapServers), logger: logger)
        #expect(try await admin.partitionCount(ofTopic: "agentjobs.dispatch") == 6)
        #expect(try await admin.partitionCount(ofTopic: "agentjobs.unknown") == nil)
        await #expect(throws: KafkaError.self) {
            try await admin.createTopics([.init(name: "bad name", partitionCount: 1)])
        }
        await admin.shutdown()
    }
}

/// Messages handled by the members of a group, for the rebalance test.
actor SeenMessages {
    private var values: Set<String> = []
    private(set) var readers: Set<String> = []
    private(set) var commitFailures = 0
    private var handled: Set<String> = []

    var count: Int { values.count }
    var handledCount: Int { handled.count }

    func record(_ value: String, by reader: String) {
        values.insert(value)
        readers.insert(reader)
    }

    func recordHandled(_ value: String) {
        handled.insert(value)
    }

    func recordCommitFailure() {
        commitFailures += 1
    }
}
