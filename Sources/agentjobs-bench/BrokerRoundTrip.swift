import AgentJobsCore
import AgentJobsKafka
import Foundation
import Logging
import Synchronization

/// The broker's own produce → consume round trip, the yardstick issue 18 sets for trigger →
/// started on the broker: two raw hops through librdkafka with the product's client settings and
/// nothing of AgentJobs around them. A message is produced to a `ping` topic; an echo reads it
/// (assigned its partition, as a host reads dispatch) and produces it to a `pong` topic; the
/// sender reads it back. One message in flight at a time.
enum BrokerRoundTrip {
    /// Round trips measured, after ``warmUp`` that are not.
    static let count = 100
    static let warmUp = 10

    /// Measures ``count`` round trips.
    /// - Returns: Each round trip's time, in milliseconds, sorted.
    /// - Throws: ``BenchFailure`` when a message does not come back within 30 s.
    static func measure(_ kafka: KafkaTarget) async throws -> [Double] {
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let ping = "bench-\(suffix)-ping"
        let pong = "bench-\(suffix)-pong"
        let logger = quietLogger("bench.round-trip")
        try await kafka.createTopics([ping: 1, pong: 1], logger: logger)
        func reader(_ topic: String) throws -> KafkaConsumer {
            try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    client: kafka.client("round-trip", consumer: true, extra: KafkaTarget.hostConsumerProperties),
                    subscription: .assignment(
                        groupID: "bench-\(suffix)-\(topic)", partitions: [TopicPartition(topic: topic, partition: 0)])),
                logger: logger)
        }
        let producer = try KafkaProducer(configuration: kafka.producer("round-trip"), logger: logger)
        let pings = try reader(ping)
        let pongs = try reader(pong)
        let services = RunningServices.start([producer, pings, pongs], logger: logger)
        let done = Counter()
        let echoed = Counter()
        // The echo, the measurement and a deadline race: the first to end or fail cancels the
        // others, and its error is the one reported.
        let result: Result<[Double], any Error>
        do {
            result = .success(
                try await withThrowingTaskGroup(of: [Double]?.self) { group in
                    group.addTask {
                        for try await message in pings.messages {
                            let echo = await producer.enqueueBatch([
                                OutgoingMessage(topic: pong, key: "k", value: message.value)
                            ])
                            for result in await echo.results() { _ = try result.get() }
                            echoed.add()
                        }
                        throw BenchFailure("the ping reader ended")
                    }
                    group.addTask {
                        var times: [Double] = []
                        var replies = pongs.messages.makeAsyncIterator()
                        for index in 0..<(warmUp + count) {
                            let start = ContinuousClock.now
                            let delivery = await producer.enqueueBatch([
                                OutgoingMessage(topic: ping, key: "k", value: Array("\(index)".utf8))
                            ])
                            guard let reply = try await replies.next() else {
                                throw BenchFailure("the pong reader ended")
                            }
                            let elapsed = ContinuousClock.now - start
                            let text = String(decoding: reply.value, as: UTF8.self)
                            guard text == "\(index)" else {
                                throw BenchFailure("round trip \(index) came back as \(text)")
                            }
                            for result in await delivery.results() { _ = try result.get() }
                            if index >= warmUp { times.append(elapsed.seconds * 1000) }
                            done.add()
                        }
                        return times.sorted()
                    }
                    // A message that never comes back would hang the benchmark: given up after a second
                    // per round trip (one takes about 250 ms on Tansu, whose fetches poll).
                    group.addTask {
                        try await Task.sleep(for: .seconds(30 + warmUp + count))
                        throw BenchFailure(
                            "the broker round trip did not finish in time: \(done.value) of \(warmUp + count) came "
                                + "back, the echo read \(echoed.value)")
                    }
                    defer { group.cancelAll() }
                    while let finished = try await group.next() {
                        if let times = finished { return times }
                    }
                    throw BenchFailure("the broker round trip ended without a result")
                })
        } catch {
            result = .failure(error)
        }
        do {
            try await services.stop()
        } catch {
            if case .failure(let failure) = result {
                throw BenchFailure("\(failure); the Kafka clients stopped with: \(error)")
            }
        }
        return try result.get()
    }
}

/// A count shared with a task.
private final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func add() { count.add(1, ordering: .relaxed) }
}
