import AgentJobsCore
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Logging
import Testing

@testable import AgentJobsEmbeddedLog

/// What only the embedded log has: the group lease, in-process wake-ups, polling across
/// instances, retention, and the consumer's state machine as a value.
@Suite("Embedded message log", .timeLimit(.minutes(1)))
struct EmbeddedLogTests {
    let logger = testLogger("embedded-log")

    /// A fresh store and a log sharing its database.
    func withLog(_ body: (SQLiteStore, SQLiteMessageLog, String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-log-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("db.sqlite").path
        let store = try SQLiteStore(path: path, durableCommits: false)
        let log = SQLiteMessageLog(sharing: store.database)
        do {
            try await body(store, log, path)
        } catch {
            await store.close()
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
        await store.close()
        try? FileManager.default.removeItem(at: directory)
    }

    func sendAll(_ producer: SQLiteMessageProducer, _ messages: [OutgoingMessage]) async throws {
        for result in await producer.sendBatch(messages) { _ = try result.get() }
    }

    func start(
        _ log: SQLiteMessageLog, _ configuration: SQLiteMessageConsumerConfiguration
    ) -> (SQLiteMessageConsumer, TestConsumer) {
        let consumer = SQLiteMessageConsumer(log: log, configuration: configuration, logger: logger)
        return (
            consumer,
            TestConsumer(
                consumer, capacity: configuration.bufferCapacity, buffered: { consumer.bufferedCount },
                assignment: { consumer.assignment })
        )
    }

    @Test("a standby takes over when the owner's lease expires, and the dead owner's commits are fenced off")
    func standbyTakesOverAnExpiredLease() async throws {
        try await withLog { _, log, _ in
            let producer = SQLiteMessageProducer(log: log)
            let group = "aggregator"
            try await log.createTopic("events", partitionCount: 2)
            try await sendAll(
                producer,
                (0..<6).map { OutgoingMessage(topic: "events", key: "run-\($0)", value: [UInt8($0)]) })
            // A member that took the lease and then died: it never renews or gives it up.
            guard
                case .acquired(let deadGeneration, _) = try await log.acquireLease(
                    groupID: group, topics: ["events"], member: "dead", duration: .milliseconds(300))
            else {
                Issue.record("the first member must get the free lease")
                return
            }

            let (_, standby) = start(
                log, .init(subscription: .group(id: group, topics: ["events"]), leaseDuration: .seconds(2)))
            let received = try await standby.read(6, within: 20)
            #expect(Set(received.map(\.value)) == Set((0..<6).map { [UInt8($0)] }))
            #expect(standby.assignment.count == 2)

            // The dead member wakes up and commits late: nothing moves.
            let fenced = try await log.commit(
                groupID: group, offsets: [TopicPartition(topic: "events", partition: 0): 100],
                fence: .init(member: "dead", generation: deadGeneration))
            #expect(!fenced)
            #expect(
                try await log.committedOffset(groupID: group, topicPartition: .init(topic: "events", partition: 0))
                    == nil)
            try await standby.commit(received.map(\.position))
            #expect(await standby.stop() == nil)
            let committed = try await log.committedOffset(
                groupID: group, topicPartition: .init(topic: "events", partition: 0))
            #expect(committed == received.filter { $0.partition == 0 }.map { $0.offset + 1 }.max())
        }
    }

    @Test("a producer on the same log wakes its consumers at once, without waiting for a poll")
    func sameProcessSendsWakeConsumers() async throws {
        try await withLog { _, log, _ in
            let producer = SQLiteMessageProducer(log: log)
            try await log.createTopic("dispatch", partitionCount: 1)
            // With an hour between polls, only the in-process signal can deliver in time.
            let (_, consumer) = start(
                log,
                .init(
                    subscription: .assignment(groupID: "host-1", partitions: [.init(topic: "dispatch", partition: 0)]),
                    pollInterval: .seconds(3600)))
            _ = try await producer.send(OutgoingMessage(topic: "dispatch", key: "host-1", value: [1]))
            #expect(try await consumer.read(1, within: 20).map(\.value) == [[1]])
            let clock = ContinuousClock()
            var latencies: [Duration] = []
            for value in 2...21 {
                let start = clock.now
                _ = try await producer.send(OutgoingMessage(topic: "dispatch", key: "host-1", value: [UInt8(value)]))
                #expect(try await consumer.read(1, within: 20).map(\.value) == [[UInt8(value)]])
                latencies.append(clock.now - start)
            }
            // Reported, not asserted: timing depends on the machine.
            logger.notice(
                "send→receive in one process", metadata: ["median": "\(latencies.sorted()[latencies.count / 2])"])
            #expect(await consumer.stop() == nil)
        }
    }

    @Test("an append wakes only the consumers that read its partition and key, and group members of its topic")
    func appendsWakeOnlyConcernedConsumers() async throws {
        try await withLog { _, log, _ in
            try await log.createTopic("dispatch", partitionCount: 2)
            try await log.createTopic("events", partitionCount: 1)
            let partition0 = TopicPartition(topic: "dispatch", partition: 0)
            let partition1 = TopicPartition(topic: "dispatch", partition: 1)
            // Two hosts whose keys share a partition, and one on the other partition.
            var keysByPartition: [Int32: [String]] = [:]
            for index in 0..<64 {
                let key = "host-\(index)"
                keysByPartition[try await log.partition(forKey: Array(key.utf8), inTopic: "dispatch"), default: []]
                    .append(key)
            }
            let sameA = try #require(keysByPartition[0]?.first)
            let sameB = try #require(keysByPartition[0]?.dropFirst().first)
            let other = try #require(keysByPartition[1]?.first)

            let hostA = Wakeup()
            let hostB = Wakeup()
            let hostOther = Wakeup()
            let wholePartition = Wakeup()
            let dispatchGroup = Wakeup()
            let eventsGroup = Wakeup()
            log.signal.subscribe(hostA, interest: .partitions([partition0], keyFilter: Array(sameA.utf8)))
            log.signal.subscribe(hostB, interest: .partitions([partition0], keyFilter: Array(sameB.utf8)))
            log.signal.subscribe(hostOther, interest: .partitions([partition1], keyFilter: Array(other.utf8)))
            log.signal.subscribe(wholePartition, interest: .partitions([partition0], keyFilter: nil))
            log.signal.subscribe(dispatchGroup, interest: .topics(["dispatch"]))
            log.signal.subscribe(eventsGroup, interest: .topics(["events"]))

            _ = try await SQLiteMessageProducer(log: log).send(
                OutgoingMessage(topic: "dispatch", key: sameA, value: [1]))
            #expect(hostA.isPending)
            #expect(wholePartition.isPending)
            #expect(dispatchGroup.isPending)
            #expect(!hostB.isPending)
            #expect(!hostOther.isPending)
            #expect(!eventsGroup.isPending)

            // A released lease concerns every standby, whatever it reads.
            log.signal.signalAll()
            #expect(hostOther.isPending && eventsGroup.isPending && hostB.isPending)
            for wakeup in [hostA, hostB, hostOther, wholePartition, dispatchGroup, eventsGroup] {
                log.signal.unsubscribe(wakeup)
            }
        }
    }

    @Test("a consumer on another log instance of the same file finds new messages by polling")
    func otherInstancesArePolled() async throws {
        try await withLog { _, log, path in
            let other = try SQLiteMessageLog(path: path, durableCommits: false)
            let (_, consumer) = start(
                other,
                .init(
                    subscription: .assignment(groupID: "g", partitions: [.init(topic: "t", partition: 0)]),
                    pollInterval: .milliseconds(20)))
            let producer = SQLiteMessageProducer(log: log)
            try await log.createTopic("t", partitionCount: 1)
            _ = try await producer.send(OutgoingMessage(topic: "t", key: nil, value: [9]))
            #expect(try await consumer.read(1, within: 20).map(\.value) == [[9]])
            #expect(await consumer.stop() == nil)
            await other.close()
        }
    }

    @Test("retention deletes old messages every committed group is past; offsets stay dense")
    func retentionKeepsWhatGroupsStillNeed() async throws {
        try await withLog { _, log, _ in
            let producer = SQLiteMessageProducer(log: log)
            try await log.createTopic("events", partitionCount: 1)
            try await log.createTopic("status", partitionCount: 1)
            try await sendAll(
                producer,
                (0..<10).map { OutgoingMessage(topic: "events", key: "k", value: [UInt8($0)]) })
            try await sendAll(
                producer,
                (0..<3).map { OutgoingMessage(topic: "status", key: "k", value: [UInt8($0)]) })
            let events = TopicPartition(topic: "events", partition: 0)
            try await log.commit(groupID: "fast", offsets: [events: 7], fence: nil)
            try await log.commit(groupID: "slow", offsets: [events: 4], fence: nil)

            // Nothing is old enough yet.
            #expect(try await log.deleteMessages(olderThan: .seconds(60)) == 0)
            // Later: events below the slowest group's position go; status (no group) goes by age.
            let later = Date().addingTimeInterval(120)
            #expect(try await log.deleteMessages(olderThan: .seconds(60), now: later) == 4 + 3)

            let next = try await producer.send(OutgoingMessage(topic: "events", key: "k", value: [10]))
            #expect(next.offset == 10)
            let (_, fresh) = start(log, .init(subscription: .assignment(groupID: "new", partitions: [events])))
            #expect(try await fresh.read(7).map(\.offset) == Array(4...10))
            #expect(await fresh.stop() == nil)
        }
    }

    @Test("empty keys and empty values are stored as empty, not as missing")
    func emptyKeysAndValues() async throws {
        try await withLog { _, log, _ in
            let producer = SQLiteMessageProducer(log: log)
            let position = try await producer.send(
                OutgoingMessage(topic: "t", key: [], value: [], headers: [.init(key: "e", value: [])]))
            let (_, consumer) = start(
                log,
                .init(subscription: .assignment(groupID: "g", partitions: [position.topicPartition], keyFilter: [])))
            let received = try await consumer.read(1)
            #expect(received.first?.key == [])
            #expect(received.first?.value == [])
            #expect(received.first?.headers == [MessageHeader(key: "e", value: [])])
            #expect(await consumer.stop() == nil)
        }
    }

    @Test(
        "a message whose stored headers are damaged is a corrupt-log error naming it, not a message with fewer headers")
    func damagedHeadersAreAnError() async throws {
        try await withLog { _, log, _ in
            let producer = SQLiteMessageProducer(log: log)
            let position = try await producer.send(
                OutgoingMessage(
                    topic: "t", key: "k", value: [1],
                    headers: [.init(key: "signature", value: Array("abc".utf8)), .init(key: "type", value: [2])]))
            // Cut the blob in the middle of the second header, as a torn or foreign write would.
            try await log.database.write { db in
                try db.execute("UPDATE log_messages SET headers = substr(headers, 1, 16)", [])
            }
            let request = SQLiteMessageLog.FetchRequest(topicPartition: position.topicPartition, from: 0)
            let error = await #expect(throws: MessageLogError.self) {
                try await log.fetch([request], limit: 10, keyFilter: nil)
            }
            #expect(error?.code == .corrupt)
            #expect(error?.message.contains("log_messages.headers of \(position.topicPartition) offset 0") == true)
        }
    }

    @Test("graceful shutdown ends the messages and later commits are refused")
    func shutdownEndsMessages() async throws {
        try await withLog { _, log, _ in
            let producer = SQLiteMessageProducer(log: log)
            let position = try await producer.send(OutgoingMessage(topic: "t", key: "a", value: [1]))
            let consumer = SQLiteMessageConsumer(
                log: log, configuration: .init(subscription: .group(id: "g", topics: ["t"])), logger: logger)
            let running = Task { try await consumer.run() }
            var iterator = consumer.messages.makeAsyncIterator()
            #expect(try await iterator.next()?.position == position)
            running.cancel()
            try await running.value
            #expect(try await iterator.next() == nil)
            await #expect(throws: MessageLogError.self) { try await consumer.commit([position]) }
            await #expect(throws: MessageLogError.self) { try await consumer.run() }
        }
    }

    @Test("the consumer state machine never buffers beyond capacity and commits only owned partitions")
    func stateMachineAsValue() throws {
        var machine = SQLiteConsumerStateMachine<Int>(capacity: 2)
        let started = machine.start()
        #expect(started)
        let owned = TopicPartition(topic: "t", partition: 0)
        machine.assign([owned: 0], generation: 3)
        #expect(machine.fetchPlan.room == 2)
        let messages = (0..<2).map { IncomingMessage(topic: "t", partition: 0, offset: Int64($0), key: nil, value: []) }
        let handOff = machine.fetched(.init(messages: messages, advancedTo: [owned: 2], caughtUp: true))
        #expect(handOff == nil)
        #expect(machine.fetchPlan.room == 0)
        #expect(machine.fetchPlan.positions == [owned: 2])
        guard case .messages(let first, let wakeFetcher) = machine.next(waiter: 1) else {
            Issue.record("a buffered message must be handed out")
            return
        }
        #expect(first.map(\.offset) == [0] && wakeFetcher)
        let offsets = try machine.offsetsToCommit([
            .init(topic: "t", partition: 0, offset: 0), .init(topic: "t", partition: 0, offset: 5),
            .init(topic: "t", partition: 1, offset: 9),
        ])
        #expect(offsets == [owned: 6])
        machine.revokeAll()
        #expect(machine.bufferedCount == 0)
        #expect(try machine.offsetsToCommit([.init(topic: "t", partition: 0, offset: 1)]).isEmpty)
        let waiter = machine.close()
        #expect(waiter == nil)
        machine.closed()
        let stopped = machine
        #expect(throws: MessageLogError.self) { try stopped.offsetsToCommit([]) }
    }
}
