import AgentJobsAggregator
import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsKafka
import AgentJobsSQLite
import AgentJobsStore
import Foundation
import Logging
import ServiceLifecycle

/// Issue #5: run events applied per second into SQLite through `StatusAggregator`, from the
/// first event produced to the last run recorded as succeeded, with each event's latency from
/// being handed to the producer to the commit that applied it; next to a raw SQLite batch-insert
/// baseline measured in the same run.
enum AggregatorBenchmark {
    static let goalPerSecond = 50_000.0
    static let goalShareOfRaw = 0.5
    static let statusChanged = "run status changed"

    struct TransportFigures: Codable, Sendable {
        var transport: String
        /// Runs whose two events were all waiting in the topic before the aggregator started.
        var backlogRuns: Int
        /// Those events applied per second, from the consumer owning its partitions to the last
        /// commit: the aggregator's own rate, with no producer sharing the machine.
        var backlog: RateFigure
        /// Start of the aggregator → its consumer owns its partitions, in seconds.
        var backlogJoinSeconds: Double
        /// Runs whose `started` and `succeeded` events were produced as fast as the producer went.
        var runs: Int
        var throughput: RateFigure
        /// When the producer had handed over its last event (after the first event), in seconds.
        var producerSeconds: Double
        /// Event handed to the producer → its status committed, during the throughput run.
        var latencyUnderLoad: LatencyFigure
        /// The same at a steady `pacedRate` events/s (half the measured throughput).
        var pacedRate: Double?
        var latencyPaced: LatencyFigure?
        var runsSucceeded: Int
    }

    struct Figures: Codable, Sendable {
        var runs: Int
        var hosts: Int
        var batchSize: Int
        var rawBaseline: RawSQLiteBaseline.Figure
        /// The aggregator's own SQLite work alone: its ceiling on this disk.
        var rawStatusUpdates: RawSQLiteStatusUpdates.Figure
        var embedded: TransportFigures
        var kafka: TransportFigures?
        var kafkaSkipped: String?
        var failures: [String]
    }

    static func run(
        directory: URL, fixture: PipelineFixture, kafka: KafkaTarget?, progress: (String) -> Void
    ) async throws -> Figures {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let batchSize = StatusAggregator<SQLiteMessageConsumer>.Configuration().batchSize
        progress("aggregator: raw SQLite baseline, \(batchSize) inserts per transaction")
        let raw = try await offPool {
            try RawSQLiteBaseline.measure(
                path: directory.appendingPathComponent("raw.sqlite").path, rows: 100_000,
                rowsPerTransaction: batchSize, timeLimit: .seconds(5))
        }
        progress("aggregator: raw SQLite status updates on a copy of the store, \(batchSize) events per transaction")
        let updatesPath = try fixture.copy(to: directory.appendingPathComponent("raw-updates"))
        let runIds = fixture.runs.map(\.id)
        let updates = try await offPool {
            try RawSQLiteStatusUpdates.measure(
                path: updatesPath, runIds: runIds, eventsPerTransaction: batchSize, timeLimit: .seconds(5))
        }
        progress("aggregator: signing \(fixture.runs.count * 2) events (started, succeeded) with the hosts' keys")
        let events = try signedEvents(fixture)
        var failures: [String] = []

        progress("aggregator: embedded log")
        let embedded = try await measure(
            transport: "embedded SQLite log", path: fixture.copy(to: directory.appendingPathComponent("embedded")),
            fixture: fixture, events: events, progress: progress
        ) { store in
            let log = SQLiteMessageLog(sharing: store.database)
            let consumer = SQLiteMessageConsumer(
                log: log,
                configuration: SQLiteMessageConsumerConfiguration(
                    subscription: .group(id: "agentjobs-aggregator", topics: [Topic.runEvents])),
                logger: quietLogger("bench.consumer"))
            return Transport(
                consumer: consumer, producer: SQLiteMessageProducer(log: log), services: [],
                assigned: { !consumer.assignment.isEmpty })
        }
        failures += embedded.failures
        var figures = Figures(
            runs: fixture.runs.count, hosts: fixture.hosts.count, batchSize: batchSize, rawBaseline: raw,
            rawStatusUpdates: updates,
            embedded: embedded.figures, kafka: nil, kafkaSkipped: nil, failures: failures)

        guard let kafka else {
            figures.kafkaSkipped = KafkaTarget.skipReason
            return figures
        }
        let topics = BenchTopics()
        let logger = quietLogger("bench.kafka")
        try await kafka.createTopics(topics.all, logger: logger)
        progress("aggregator: Kafka on \(kafka.description)")
        let overKafka = try await measure(
            transport: "Kafka (\(kafka.description))",
            path: fixture.copy(to: directory.appendingPathComponent("kafka")),
            fixture: fixture, events: events, progress: progress
        ) { _ in
            let producer = try KafkaProducer(
                configuration: KafkaProducerConfiguration(client: kafka.client("aggregator-producer")), logger: logger)
            // As `agentjobs aggregate` configures it.
            let consumer = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    client: kafka.client("aggregator", consumer: true),
                    subscription: .group(id: "bench-aggregator-\(topics.suffix)", topics: [topics.runEvents]),
                    bufferCapacity: 4096),
                logger: logger)
            return Transport(
                consumer: consumer, producer: TopicRenamingProducer(base: producer, topics: topics),
                services: [producer], assigned: { !consumer.assignment.isEmpty })
        }
        figures.kafka = overKafka.figures
        figures.failures += overKafka.failures
        return figures
    }

    struct Transport<Consumer: MessageConsumer & Service> {
        var consumer: Consumer
        var producer: any MessageProducer
        /// Services to start before the aggregator (the Kafka producer).
        var services: [any Service]
        var assigned: @Sendable () -> Bool
    }

    /// Per run: its signed `started` and `succeeded` events (sequences 2 and 3, as a host numbers
    /// them after `accepted`).
    struct RunEvents: Sendable {
        var runId: String
        var started: OutgoingMessage
        var succeeded: OutgoingMessage
    }

    private static func signedEvents(_ fixture: PipelineFixture) throws -> [RunEvents] {
        let keys = Dictionary(uniqueKeysWithValues: fixture.hosts.map { ($0.id, $0.eventKey) })
        let now = Date()
        return try fixture.runs.map { run in
            func event(_ type: RunEventType, _ sequence: Int) throws -> OutgoingMessage {
                try RunLifecycleEvent(
                    type: type, runId: run.id, jobId: run.jobId, hostId: run.hostId, dispatchEpoch: run.dispatchEpoch,
                    sequence: sequence, at: now, exitCode: type == .succeeded ? 0 : nil
                ).message(signedWith: keys[run.hostId]!)
            }
            return RunEvents(runId: run.id, started: try event(.started, 2), succeeded: try event(.succeeded, 3))
        }
    }

    private static func measure<Consumer: MessageConsumer & Service>(
        transport name: String, path: String, fixture: PipelineFixture, events: [RunEvents],
        progress: (String) -> Void, makeTransport: (SQLiteStore) async throws -> Transport<Consumer>
    ) async throws -> (figures: TransportFigures, failures: [String]) {
        let stamps = LogStamps(watching: [statusChanged])
        let result = try await withStore(path) { store in
            let transport = try await makeTransport(store)
            let aggregator = StatusAggregator(
                store: store, consumer: transport.consumer, producer: transport.producer,
                logger: stamps.logger("bench.aggregator"))
            // The runs in three parts: a backlog waiting before the aggregator starts, a load
            // produced as fast as possible while it runs, and a paced tail for latency.
            let paced = min(events.count / 5, 10_000)
            let backlog = (events.count - paced) / 2
            let loaded = events.count - paced - backlog
            let transportServices = RunningServices.start(transport.services, logger: quietLogger("bench.services"))
            var services: RunningServices?
            let outcome = await capture {
                // The producer's first message to a topic waits for the topic's metadata (~0.5 s on
                // Tansu): one message to the run-status topic before any clock starts, so that the
                // aggregator's first records are not held up by what is a once-per-process cost.
                try await send(
                    [OutgoingMessage(topic: Topic.runStatus, key: "bench-warm-up", value: Array("{}".utf8))],
                    to: transport.producer, "warming up the producer")
                progress("aggregator: \(name): \(backlog * 2) events produced before the aggregator starts")
                try await produceBacklog(events[..<backlog], to: transport.producer)
                let pid = getpid()
                let before = CPUSample.take(pids: [pid])
                let started = ContinuousClock.now
                services = RunningServices.start(
                    [aggregator, transport.consumer], logger: quietLogger("bench.services"))
                try await waitUntil("the aggregator's consumer to own its partitions", timeout: .seconds(60)) {
                    transport.assigned()
                }
                let assigned = ContinuousClock.now
                let target = backlog
                try await waitUntil("every backlog run to be recorded as succeeded", timeout: .seconds(300)) {
                    stamps.count(statusChanged, status: RunStatus.succeeded.rawValue) >= target
                }
                let applied = stamps.firstByRun(statusChanged)
                let end = events[..<backlog].compactMap { applied[$0.runId + "|succeeded"] }.max() ?? .now
                let seconds = (end - assigned).seconds
                let drain = RateFigure(
                    count: backlog * 2, seconds: seconds,
                    cpu: CPUUsage(
                        from: before, to: CPUSample.take(pids: [pid]), wallSeconds: (end - started).seconds,
                        serverPid: nil, benchPid: pid))
                progress("aggregator: \(name): \(loaded * 2) events as fast as they can be produced")
                let load = try await produce(
                    events[backlog..<(backlog + loaded)], to: transport.producer, stamps: stamps, pacedRate: nil)
                var figures = TransportFigures(
                    transport: name, backlogRuns: backlog, backlog: drain,
                    backlogJoinSeconds: (assigned - started).seconds, runs: loaded, throughput: load.rate,
                    producerSeconds: load.producerSeconds, latencyUnderLoad: load.latency, pacedRate: nil,
                    latencyPaced: nil, runsSucceeded: 0)
                if paced > 0 {
                    let rate = (load.rate.perSecond / 2).rounded()
                    progress("aggregator: \(name): \(paced * 2) events at a steady \(formatRate(rate))/s")
                    let steady = try await produce(
                        events[(backlog + loaded)...], to: transport.producer, stamps: stamps, pacedRate: rate)
                    figures.pacedRate = rate
                    figures.latencyPaced = steady.latency
                }
                return figures
            }
            try await services?.stop()
            try await transportServices.stop()
            return try outcome.get()
        }
        var figures = result
        // Counted in the database after the store closed: every event must be durable.
        figures.runsSucceeded = Int(
            try await offPool {
                try SQLiteConnection(path: path).count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
            })
        var failures: [String] = []
        if figures.runsSucceeded != events.count {
            failures.append(
                "aggregator (\(name)): \(figures.runsSucceeded) of \(events.count) runs succeeded in the store")
        }
        return (figures, failures)
    }

    /// Produces the events of `runs` (all `started` before all `succeeded` of the same chunk of
    /// 1,000, so each run's events stay in order) without waiting for the aggregator.
    private static func produceBacklog(_ runs: ArraySlice<RunEvents>, to producer: any MessageProducer) async throws {
        for start in stride(from: runs.startIndex, to: runs.endIndex, by: 1000) {
            let chunk = runs[start..<min(start + 1000, runs.endIndex)]
            try await send(chunk.map(\.started) + chunk.map(\.succeeded), to: producer, "producing run events")
        }
    }

    /// Sends `messages` in one batch. - Throws: ``BenchFailure`` naming `what` when one was not stored.
    private static func send(_ messages: [OutgoingMessage], to producer: any MessageProducer, _ what: String)
        async throws
    {
        for result in await producer.sendBatch(messages) {
            if case .failure(let error) = result { throw BenchFailure("\(what) failed: \(error)") }
        }
    }

    private struct Load {
        var rate: RateFigure
        var producerSeconds: Double
        var latency: LatencyFigure
    }

    /// Produces the events (batch k: `started` of chunk k and `succeeded` of chunk k-1, so each
    /// run's events stay in order), then waits until every run is recorded as succeeded.
    private static func produce(
        _ runs: ArraySlice<RunEvents>, to producer: any MessageProducer, stamps: LogStamps, pacedRate: Double?
    ) async throws -> Load {
        let chunk = pacedRate.map { max(1, Int($0 / 200)) } ?? 1000  // paced: a batch every 10 ms
        let chunks = stride(from: runs.startIndex, to: runs.endIndex, by: chunk).map {
            runs[$0..<min($0 + chunk, runs.endIndex)]
        }
        let target = stamps.count(statusChanged, status: RunStatus.succeeded.rawValue) + runs.count
        var startedAt: [String: ContinuousClock.Instant] = [:]
        var succeededAt: [String: ContinuousClock.Instant] = [:]
        let pid = getpid()
        let before = CPUSample.take(pids: [pid])
        let start = ContinuousClock.now
        for index in 0...chunks.count {
            if let pacedRate {
                let due = start + .seconds(Double(index * chunk * 2) / pacedRate)
                if due > .now { try await Task.sleep(until: due) }
            }
            var batch: [OutgoingMessage] = []
            if index < chunks.count { batch += chunks[index].map(\.started) }
            if index > 0 { batch += chunks[index - 1].map(\.succeeded) }
            let sentAt = ContinuousClock.now
            if index < chunks.count { for run in chunks[index] { startedAt[run.runId] = sentAt } }
            if index > 0 { for run in chunks[index - 1] { succeededAt[run.runId] = sentAt } }
            try await send(batch, to: producer, "producing run events")
        }
        let producerSeconds = (ContinuousClock.now - start).seconds
        try await waitUntil("every run to be recorded as succeeded", timeout: .seconds(300)) {
            stamps.count(statusChanged, status: RunStatus.succeeded.rawValue) >= target
        }
        let applied = stamps.firstByRun(statusChanged)
        let end = runs.compactMap { applied[$0.runId + "|succeeded"] }.max() ?? .now
        let seconds = (end - start).seconds
        let after = CPUSample.take(pids: [pid])
        var latencies: [Double] = []
        latencies.reserveCapacity(runs.count * 2)
        for run in runs {
            if let sent = startedAt[run.runId], let done = applied[run.runId + "|running"] {
                latencies.append((done - sent).milliseconds)
            }
            if let sent = succeededAt[run.runId], let done = applied[run.runId + "|succeeded"] {
                latencies.append((done - sent).milliseconds)
            }
        }
        return Load(
            rate: RateFigure(
                count: runs.count * 2, seconds: seconds,
                cpu: CPUUsage(from: before, to: after, wallSeconds: seconds, serverPid: nil, benchPid: pid)),
            producerSeconds: producerSeconds, latency: LatencyFigure(milliseconds: latencies))
    }

    static func text(_ figures: Figures) -> String {
        var lines = [
            "Status aggregator (issue #5): \(formatCount(figures.runs)) queued runs on \(figures.hosts) hosts;"
                + " per run a signed started and succeeded event; aggregator batches of up to \(figures.batchSize)"
        ]
        func add(_ label: String, _ value: String) { lines.append(reportLine(label, value)) }
        let raw = figures.rawBaseline
        add(
            "raw SQLite, \(raw.rowsPerTransaction) INSERTs per transaction",
            "\(formatRate(raw.rowsPerSecond)) rows/s   (\(formatCount(raw.rows)) rows in \(formatFixed(raw.seconds, 2)) s)"
        )
        let updates = figures.rawStatusUpdates
        add(
            "raw SQLite, store's run read + UPDATE per event",
            "\(formatRate(updates.eventsPerSecond)) events/s   (\(formatCount(updates.events)) in \(formatFixed(updates.seconds, 2)) s;"
                + " \(formatPercent(updates.eventsPerSecond / raw.rowsPerSecond)) of raw inserts)")
        for transport in [figures.embedded] + (figures.kafka.map { [$0] } ?? []) {
            lines.append("  via \(transport.transport):")
            add(
                "  backlog drain, \(formatCount(transport.backlogRuns * 2)) events waiting",
                transport.backlog.text("events"))
            add("  aggregator start → partitions owned", "\(formatFixed(transport.backlogJoinSeconds, 2)) s")
            let backlogShare = transport.backlog.perSecond / raw.rowsPerSecond
            let backlogMet = transport.backlog.perSecond >= goalPerSecond && backlogShare >= goalShareOfRaw
            add(
                "  goal >= \(formatRate(goalPerSecond))/s, >= \(formatPercent(goalShareOfRaw)) of raw: drain",
                "\(backlogMet ? "met" : "NOT met") (\(formatPercent(backlogShare)) of raw;"
                    + " \(formatPercent(transport.backlog.perSecond / updates.eventsPerSecond)) of raw status updates)")
            add("  loaded: first produced → last committed", transport.throughput.text("events"))
            add("  producer done after", "\(formatFixed(transport.producerSeconds, 2)) s")
            add("  event → committed, under that load", transport.latencyUnderLoad.text)
            if let rate = transport.pacedRate, let paced = transport.latencyPaced {
                add("  event → committed at \(formatRate(rate)) events/s", paced.text)
            }
            let share = transport.throughput.perSecond / raw.rowsPerSecond
            let met = transport.throughput.perSecond >= goalPerSecond && share >= goalShareOfRaw
            add(
                "  goal >= \(formatRate(goalPerSecond))/s, >= \(formatPercent(goalShareOfRaw)) of raw: loaded",
                "\(met ? "met" : "NOT met") (\(formatPercent(share)) of raw)")
        }
        if let skipped = figures.kafkaSkipped { add("Kafka", "skipped: \(skipped)") }
        for failure in figures.failures { lines.append("  FAILED: \(failure)") }
        return lines.joined(separator: "\n")
    }
}
