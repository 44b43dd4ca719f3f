import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsKafka
import AgentJobsStore
import Foundation
import Logging
import ServiceLifecycle

/// Issue #3: outbox rows → acknowledged messages per second through `OutboxRelay.drain()`,
/// against a Kafka-protocol broker and against the embedded log, next to the raw librdkafka
/// producer on the same broker and to the relay with a transport that costs nothing; then the
/// consumers reading what the relay published.
enum RelayBenchmark {
    static let goalPerSecond = 20_000.0
    static let goalShareOfRaw = 0.5
    /// Raw producer and relay into Kafka are measured this many times, alternately, and compared by
    /// their medians: on a shared two-core machine either figure alone moves by half from one
    /// minute to the next.
    static let kafkaRounds = 3

    struct Figures: Codable, Sendable {
        var messages: Int
        var hosts: Int
        var relayBatchSize: Int
        var averageMessageBytes: Int
        var fixtureSeconds: Double
        var broker: String?
        var kafkaSkipped: String?
        /// Ed25519 signing and envelope encoding of the outbox rows alone (no store, no transport).
        var signingOnly: RateFigure
        /// The relay with a producer that acknowledges at once: the store and signing part.
        var relayNullTransport: RateFigure
        /// The relay's own steps timed one by one, per pass of `relayBatchSize` rows: read the
        /// pending rows, sign them, mark them sent (without a transport).
        var passReadMilliseconds: Double
        var passSignMilliseconds: Double
        var passMarkSentMilliseconds: Double
        var relayEmbedded: RateFigure
        /// The median of `relayKafkaRounds`.
        var relayKafka: RateFigure?
        var relayKafkaRounds: [RateFigure]?
        /// Every message in one `sendBatch`, then wait for all acknowledgements: the median of
        /// `rawProducerOneBatchRounds`, each measured just before a relay round.
        var rawProducerOneBatch: RateFigure?
        var rawProducerOneBatchRounds: [RateFigure]?
        /// `sendBatch` of the relay's batch size, one after the other (the relay's rhythm).
        var rawProducerRelaySized: RateFigure?
        var consumerEmbedded: RateFigure
        var consumerEmbeddedFirstMessageSeconds: Double
        var consumerKafka: RateFigure?
        var consumerKafkaFirstMessageSeconds: Double?
        var failures: [String]
    }

    /// - Parameter fixture: Triggered runs (one outbox row each), copied, not changed.
    static func run(
        directory: URL, fixture: PipelineFixture, kafka: KafkaTarget?, progress: (String) -> Void
    ) async throws -> Figures {
        let messages = fixture.runs.count
        let hosts = fixture.hosts.count
        let batchSize = OutboxRelay.Configuration().batchSize
        let signingKey = DispatchSigningKey()
        var failures: [String] = []

        // Signing alone, on the first batch of rows.
        let sample = try await withStore(fixture.copy(to: directory.appendingPathComponent("sample"))) { store in
            try await store.pendingOutbox(limit: batchSize)
        }
        let signingRounds = max(1, min(messages, 20_000) / sample.count)
        progress("relay: signing \(signingRounds * sample.count) outbox rows (no store, no transport)")
        let (signed, signSeconds, signCPU) = try await measured {
            var last: [OutgoingMessage] = []
            for _ in 0..<signingRounds { last = try OutboxMessage.wireMessages(sample, signedWith: signingKey) }
            return last
        }
        let signingOnly = RateFigure(count: signingRounds * sample.count, seconds: signSeconds, cpu: signCPU)
        let averageBytes =
            signed.map {
                $0.value.count + ($0.key?.count ?? 0)
                    + $0.headers.reduce(0) { $0 + $1.key.utf8.count + ($1.value?.count ?? 0) }
            }
            .reduce(0, +) / max(signed.count, 1)

        progress("relay: relay with a transport that acknowledges at once")
        let null = try await relayAll(
            path: fixture.copy(to: directory.appendingPathComponent("null")), expected: messages, signingKey: signingKey
        ) { _ in (NullProducer(), {}) }
        failures += null.failures

        progress("relay: the relay's steps timed one by one")
        let steps = try await withStore(fixture.copy(to: directory.appendingPathComponent("steps"))) { store in
            var read = Duration.zero
            var sign = Duration.zero
            var mark = Duration.zero
            var passes = 0
            while true {
                let t0 = ContinuousClock.now
                let rows = try await store.pendingOutbox(limit: batchSize)
                let t1 = ContinuousClock.now
                if rows.isEmpty { break }
                let signed = try OutboxMessage.wireMessages(rows, signedWith: signingKey)
                let t2 = ContinuousClock.now
                try await store.markOutboxSent(sequences: rows.map(\.sequence))
                let t3 = ContinuousClock.now
                keepAlive(signed)
                read += t1 - t0
                sign += t2 - t1
                mark += t3 - t2
                passes += 1
            }
            let count = Double(max(passes, 1))
            return (read.milliseconds / count, sign.milliseconds / count, mark.milliseconds / count)
        }

        progress("relay: relay into the embedded SQLite log")
        let embeddedPath = try fixture.copy(to: directory.appendingPathComponent("embedded"))
        let embedded = try await relayAll(path: embeddedPath, expected: messages, signingKey: signingKey) { store in
            let log = SQLiteMessageLog(sharing: store.database)
            return (SQLiteMessageProducer(log: log), { await log.close() })
        }
        failures += embedded.failures

        progress("relay: embedded consumer reading the \(messages) messages")
        let (consumerEmbedded, embeddedFirst) = try await withStore(embeddedPath) { store in
            let log = SQLiteMessageLog(sharing: store.database)
            let partitions = try await log.partitionCount(ofTopic: Topic.dispatch) ?? 0
            let consumer = SQLiteMessageConsumer(
                log: log,
                configuration: .init(
                    subscription: .assignment(
                        groupID: "bench-reader",
                        partitions: (0..<partitions).map { TopicPartition(topic: Topic.dispatch, partition: $0) })),
                logger: quietLogger("bench.consumer"))
            return try await consume(consumer, expected: messages)
        }
        if consumerEmbedded.count != messages {
            failures.append("embedded consumer read \(consumerEmbedded.count) of \(messages) messages")
        }

        var figures = Figures(
            messages: messages, hosts: hosts, relayBatchSize: batchSize, averageMessageBytes: averageBytes,
            fixtureSeconds: fixture.setupSeconds, broker: kafka?.description, kafkaSkipped: nil,
            signingOnly: signingOnly, relayNullTransport: null.rate, passReadMilliseconds: steps.0,
            passSignMilliseconds: steps.1, passMarkSentMilliseconds: steps.2, relayEmbedded: embedded.rate,
            consumerEmbedded: consumerEmbedded, consumerEmbeddedFirstMessageSeconds: embeddedFirst, failures: failures)

        guard let kafka else {
            figures.kafkaSkipped = KafkaTarget.skipReason
            return figures
        }
        let topics = BenchTopics()
        let logger = quietLogger("bench.kafka")
        progress("relay: creating topics on \(kafka.description)")
        try await kafka.createTopics(topics.all.merging([topics.name("raw"): 12]) { a, _ in a }, logger: logger)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(client: kafka.client("producer")), logger: logger)
        let services = RunningServices.start([producer], logger: logger)
        do {
            // The same messages the relay sends (keys, sizes, headers), already signed.
            let raw = (0..<messages).map { index -> OutgoingMessage in
                var message = signed[index % signed.count]
                message.topic = topics.name("raw")
                return message
            }
            // Both topics: the first message to a topic waits for its metadata (~0.5 s on Tansu),
            // which a relay that runs all along pays once, not per measurement. The consumer
            // below reads the dispatch topic's warm-up messages as part of its count.
            progress("relay: warming up the Kafka producer")
            check(await producer.sendBatch(Array(raw.prefix(batchSize))), "warm-up", &figures.failures)
            let dispatchWarmUp = raw.prefix(100).map { message in
                var message = message
                message.topic = topics.dispatch
                return message
            }
            check(await producer.sendBatch(dispatchWarmUp), "warm-up (dispatch topic)", &figures.failures)

            progress("relay: raw producer, sendBatch of \(batchSize) at a time")
            let (sizedFailures, sizedSeconds, sizedCPU) = await measured { () -> [String] in
                var failures: [String] = []
                for start in stride(from: 0, to: raw.count, by: batchSize) {
                    check(
                        await producer.sendBatch(Array(raw[start..<min(start + batchSize, raw.count)])),
                        "raw producer (relay-sized)", &failures)
                }
                return failures
            }
            figures.failures += sizedFailures
            figures.rawProducerRelaySized = RateFigure(count: messages, seconds: sizedSeconds, cpu: sizedCPU)

            var rawRounds: [RateFigure] = []
            var relayRounds: [RateFigure] = []
            for round in 1...kafkaRounds {
                progress("relay: round \(round) of \(kafkaRounds): raw producer, \(messages) messages in one sendBatch")
                let (oneBatch, oneSeconds, oneCPU) = await measured { await producer.sendBatch(raw) }
                check(oneBatch, "raw producer (one batch, round \(round))", &figures.failures)
                rawRounds.append(RateFigure(count: messages, seconds: oneSeconds, cpu: oneCPU))

                progress("relay: round \(round) of \(kafkaRounds): relay into Kafka")
                let relayed = try await relayAll(
                    path: fixture.copy(to: directory.appendingPathComponent("kafka-\(round)")), expected: messages,
                    signingKey: signingKey
                ) { _ in (TopicRenamingProducer(base: producer, topics: topics), {}) }
                relayRounds.append(relayed.rate)
                figures.failures += relayed.failures
            }
            figures.rawProducerOneBatchRounds = rawRounds
            figures.rawProducerOneBatch = median(rawRounds)
            figures.relayKafkaRounds = relayRounds
            figures.relayKafka = median(relayRounds)

            progress("relay: Kafka consumer reading the \(messages) relayed messages")
            let consumer = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    client: kafka.client("consumer", consumer: true),
                    subscription: .assignment(
                        groupID: "bench-reader-\(topics.suffix)",
                        partitions: (0..<12).map { TopicPartition(topic: topics.dispatch, partition: $0) }),
                    bufferCapacity: 4096),
                logger: logger)
            let (consumed, first) = try await consume(consumer, expected: messages)
            figures.consumerKafka = consumed
            figures.consumerKafkaFirstMessageSeconds = first
            if consumed.count != messages {
                figures.failures.append("Kafka consumer read \(consumed.count) of \(messages) messages")
            }
        } catch {
            try? await services.stop()
            throw error
        }
        try await services.stop()
        return figures
    }

    /// Relays every pending row of the database at `path` with `drain()` (what the relay's service
    /// loop does: batches pipelined, signing on all cores) until a pass publishes nothing, and checks
    /// that no row is left pending.
    private static func relayAll(
        path: String, expected: Int, signingKey: DispatchSigningKey,
        producer makeProducer: (SQLiteStore) async throws -> (any MessageProducer, @Sendable () async -> Void)
    ) async throws -> (rate: RateFigure, failures: [String]) {
        try await withStore(path) { store in
            let (producer, close) = try await makeProducer(store)
            let relay = OutboxRelay(
                store: store, producer: producer, signingKey: signingKey, wakeUps: OutboxSignal(),
                logger: quietLogger("bench.relay"))
            let (sent, seconds, cpu) = try await measured {
                var sent = 0
                while true {
                    let published = try await relay.drain()
                    if published == 0 { break }
                    sent += published
                }
                return sent
            }
            await close()
            var failures: [String] = []
            let left = try await store.pendingOutbox(limit: 10).count
            if sent != expected || left != 0 {
                failures.append(
                    "relay published \(sent) of \(expected) rows; \(left > 9 ? "10+" : "\(left)") left pending")
            }
            return (RateFigure(count: sent, seconds: seconds, cpu: cpu), failures)
        }
    }

    /// Reads `expected` messages, committing every 1,000 (as the aggregator commits per batch).
    /// - Returns: The rate from the first message to the last, and the seconds until the first.
    static func consume<Consumer: MessageConsumer & Service>(
        _ consumer: Consumer, expected: Int
    ) async throws -> (RateFigure, Double) {
        let services = RunningServices.start([consumer], logger: quietLogger("bench.consumer"))
        let start = ContinuousClock.now
        let pid = getpid()
        let outcome: Result<(Int, ContinuousClock.Instant?, CPUSample?), any Error> = await capture {
            try await withTimeout(.seconds(180), "\(expected) messages from the consumer") {
                var count = 0
                var first: ContinuousClock.Instant?
                var before: CPUSample?
                var pending: [MessagePosition] = []
                for try await message in consumer.messages {
                    if first == nil {
                        first = .now
                        before = CPUSample.take(pids: [pid])
                    }
                    count += 1
                    pending.append(message.position)
                    if pending.count == 1000 || count == expected {
                        try await consumer.commit(pending)
                        pending.removeAll(keepingCapacity: true)
                    }
                    if count == expected { break }
                }
                return (count, first, before)
            }
        }
        let end = ContinuousClock.now
        let after = CPUSample.take(pids: [pid])
        try await services.stop()
        let (count, first, before) = try outcome.get()
        let from = first ?? end
        let seconds = (end - from).seconds
        return (
            RateFigure(
                count: count, seconds: seconds,
                cpu: CPUUsage(
                    from: before ?? after, to: after, wallSeconds: seconds, serverPid: nil, benchPid: pid)),
            (from - start).seconds
        )
    }

    static func check(
        _ results: [Result<MessagePosition, any Error>], _ what: String, _ failures: inout [String]
    ) {
        let failed = results.filter { if case .failure = $0 { true } else { false } }
        if case .failure(let error)? = failed.first {
            failures.append("\(what): \(failed.count) of \(results.count) sends failed, e.g. \(error)")
        }
    }

    static func text(_ figures: Figures) -> String {
        var lines = [
            "Outbox relay (issue #3): \(formatCount(figures.messages)) outbox rows (one trigger each, \(figures.hosts) hosts),"
                + " drain() in batches of \(figures.relayBatchSize), ~\(figures.averageMessageBytes) bytes per message"
        ]
        func add(_ label: String, _ value: String) { lines.append(reportLine(label, value)) }
        add("fixture (jobs + triggers through the store)", "\(formatFixed(figures.fixtureSeconds, 1)) s")
        add("signing only (wireMessages, Ed25519 per 32 rows)", figures.signingOnly.text("msg"))
        add("relay, transport that acks at once", figures.relayNullTransport.text("msg"))
        add(
            "  its steps per pass of \(figures.relayBatchSize), timed alone",
            "read pending \(formatFixed(figures.passReadMilliseconds, 1)) ms, sign \(formatFixed(figures.passSignMilliseconds, 1)) ms,"
                + " mark sent \(formatFixed(figures.passMarkSentMilliseconds, 1)) ms")
        add("relay → embedded SQLite log", figures.relayEmbedded.text("msg"))
        add("embedded consumer (assignment, 4 partitions)", figures.consumerEmbedded.text("msg"))
        add("  first message after", "\(formatFixed(figures.consumerEmbeddedFirstMessageSeconds, 2)) s")
        if let skipped = figures.kafkaSkipped {
            add("Kafka", "skipped: \(skipped)")
        } else {
            add("broker", figures.broker ?? "?")
            if let raw = figures.rawProducerRelaySized {
                add("raw KafkaProducer, sendBatch of \(figures.relayBatchSize) in turn", raw.text("msg"))
            }
            if let raw = figures.rawProducerOneBatch {
                add("raw KafkaProducer, one sendBatch of all (median)", raw.text("msg"))
            }
            if let relay = figures.relayKafka { add("relay → Kafka (median)", relay.text("msg")) }
            if let raws = figures.rawProducerOneBatchRounds, let relays = figures.relayKafkaRounds {
                for (index, (raw, relay)) in zip(raws, relays).enumerated() {
                    add(
                        "  round \(index + 1): raw, then relay",
                        "\(formatRate(raw.perSecond)) msg/s, then \(formatRate(relay.perSecond)) msg/s"
                            + " (\(formatPercent(relay.perSecond / raw.perSecond)))")
                }
            }
            if let consumer = figures.consumerKafka {
                add("KafkaConsumer (assignment, 12 partitions)", consumer.text("msg"))
                add("  first message after", "\(formatFixed(figures.consumerKafkaFirstMessageSeconds ?? 0, 2)) s")
            }
            if let relay = figures.relayKafka, let raw = figures.rawProducerOneBatch {
                let share = relay.perSecond / raw.perSecond
                let met = relay.perSecond >= goalPerSecond && share >= goalShareOfRaw
                lines.append(
                    "  goal: relay → Kafka >= \(formatRate(goalPerSecond)) msg/s and >= \(formatPercent(goalShareOfRaw)) of the raw"
                        + " producer: \(met ? "met" : "NOT met") (\(formatRate(relay.perSecond)) msg/s, \(formatPercent(share)) of raw)"
                )
            }
        }
        for failure in figures.failures { lines.append("  FAILED: \(failure)") }
        return lines.joined(separator: "\n")
    }
}

/// The figure with the median rate (of an odd count; the upper middle one of an even count).
func median(_ figures: [RateFigure]) -> RateFigure? {
    let sorted = figures.sorted { $0.perSecond < $1.perSecond }
    return sorted.isEmpty ? nil : sorted[sorted.count / 2]
}

/// A producer that acknowledges every message at once, to measure what the relay costs without
/// a transport.
struct NullProducer: MessageProducer {
    func send(_ message: OutgoingMessage) async throws -> MessagePosition {
        MessagePosition(topic: message.topic, partition: 0, offset: 0)
    }

    func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
        messages.indices.map { .success(MessagePosition(topic: messages[$0].topic, partition: 0, offset: Int64($0))) }
    }
}

/// Opens the store at `path`, runs `body`, and closes it.
func withStore<T: Sendable>(_ path: String, _ body: (SQLiteStore) async throws -> T) async throws -> T {
    let store = try SQLiteStore(path: path)
    do {
        let value = try await body(store)
        await store.close()
        return value
    } catch {
        await store.close()
        throw error
    }
}

/// Runs `body`, cancelling it and failing after `timeout`.
func withTimeout<T: Sendable>(
    _ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()
        group.cancelAll()
        guard case .some(.some(let value)) = first else {
            throw BenchFailure("timed out after \(timeout) waiting for \(what)")
        }
        return value
    }
}

/// `body`'s value or error, as a `Result`.
func capture<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
    do {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}

/// Keeps a value the benchmark computed only to time it from being optimised away.
@inline(never) func keepAlive<T>(_ value: T) { withExtendedLifetime(value) {} }
