import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsKafka
import AgentJobsPostgres
import AgentJobsStore
import Foundation
import Logging

/// The postgres phase's relay case: the store case's outbox (one row per trigger, every row
/// pending) published into Kafka by `OutboxRelay.drain()` reading from and marking sent in
/// PostgreSQL, next to the raw producer sending the same signed messages, measured just before and
/// just after the relay.
extension PostgresBenchmark {
    struct RelayFigures: Codable, Sendable {
        var messages: Int
        var broker: String
        /// One `sendBatch` of every message (already signed, the relay's keys, sizes and headers),
        /// before and after the relay.
        var rawBefore: RateFigure
        var rawAfter: RateFigure
        var relay: RateFigure
        /// The relay's CPU split (this process is the relay; PostgreSQL's processes).
        var relayCPU: CPU
        var leftPending: Int
    }

    /// Publishes every pending row of `store` through the relay; the rows are left sent.
    static func measureRelay(
        store: PostgresStore, kafka: KafkaTarget, processes: PostgresProcesses?, logger: Logger
    ) async throws -> RelayFigures {
        let signingKey = DispatchSigningKey()
        var rows: [OutboxMessage] = []
        while true {
            let page = try await store.pendingOutbox(after: rows.last?.sequence ?? 0, limit: 2_000, shards: .all)
            if page.isEmpty { break }
            rows += page
        }
        let topics = BenchTopics()
        let rawTopic = topics.name("raw")
        let raw = try OutboxMessage.wireMessages(rows, signedWith: signingKey).map { message in
            var message = message
            message.topic = rawTopic
            return message
        }
        progress("postgres: relay, creating topics on \(kafka.description)")
        try await kafka.createTopics(topics.all.merging([rawTopic: 12]) { a, _ in a }, logger: logger)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(client: kafka.client("producer")), logger: logger)
        let services = RunningServices.start([producer], logger: logger)
        do {
            // The first message to a topic waits for its metadata, once per process: not measured.
            try check(await producer.sendBatch(Array(raw.prefix(100))), "warm-up")
            try check(
                await producer.sendBatch(
                    raw.prefix(100).map { message in
                        var message = message
                        message.topic = topics.dispatch
                        return message
                    }), "warm-up (dispatch topic)")
            func sendRaw() async throws -> RateFigure {
                let (results, seconds, cpu) = await measured { await producer.sendBatch(raw) }
                try check(results, "raw producer")
                return RateFigure(count: raw.count, seconds: seconds, cpu: cpu)
            }
            progress("postgres: relay, raw producer, \(formatCount(raw.count)) messages in one sendBatch")
            let rawBefore = try await sendRaw()
            progress("postgres: relay, OutboxRelay.drain() from PostgreSQL into Kafka")
            let relay = OutboxRelay(
                store: store, producer: TopicRenamingProducer(base: producer, topics: topics), signingKey: signingKey,
                logger: quietLogger("bench.relay"))
            let before = CPU.Point.take(servers: [], postgres: processes)
            let (sent, seconds, cpu) = try await measured {
                var sent = 0
                while true {
                    let published = try await relay.drain()
                    if published == 0 { break }
                    sent += published
                }
                return sent
            }
            let after = CPU.Point.take(servers: [], postgres: processes)
            progress("postgres: relay, raw producer again")
            let rawAfter = try await sendRaw()
            let left = try await store.pendingOutbox(after: 0, limit: 10, shards: .all).count
            try await services.stop()
            if sent != rows.count {
                throw BenchFailure("the relay published \(sent) of \(rows.count) rows")
            }
            return RelayFigures(
                messages: rows.count, broker: kafka.description, rawBefore: rawBefore, rawAfter: rawAfter,
                relay: RateFigure(count: sent, seconds: seconds, cpu: cpu),
                relayCPU: CPU(from: before, to: after, servers: []), leftPending: left)
        } catch {
            try? await services.stop()
            throw error
        }
    }

    /// ``RelayBenchmark/check(_:_:_:)``, throwing its failure.
    private static func check(_ results: [Result<MessagePosition, any Error>], _ what: String) throws {
        var failures: [String] = []
        RelayBenchmark.check(results, what, &failures)
        if let failure = failures.first { throw BenchFailure(failure) }
    }

    static func relayText(_ relay: RelayFigures) -> [(String, String)] {
        let rawMean = (relay.rawBefore.perSecond + relay.rawAfter.perSecond) / 2
        return [
            (
                "relay: OutboxRelay from PostgreSQL → Kafka",
                "\(formatRate(relay.relay.perSecond)) msg/s = \(formatPercent(relay.relay.perSecond / rawMean)) of raw"
            ),
            ("  messages, broker", "\(formatCount(relay.messages)), \(relay.broker)"),
            (
                "  raw KafkaProducer, one sendBatch of all",
                "\(formatRate(relay.rawBefore.perSecond)) msg/s before, \(formatRate(relay.rawAfter.perSecond)) after"
            ),
            ("  CPU", cpuText(relay.relayCPU, operations: relay.messages, serverName: nil)),
            ("  rows left pending", "\(relay.leftPending)"),
        ]
    }
}
