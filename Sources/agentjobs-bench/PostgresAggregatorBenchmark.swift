import AgentJobsAggregator
import AgentJobsCore
import AgentJobsKafka
import AgentJobsPostgres
import AgentJobsStore
import Foundation
import Logging
import ServiceLifecycle

/// The postgres phase's aggregator case: run events applied into PostgreSQL by one and by two
/// `StatusAggregator` replicas (each with a store of its own, as separate processes would have),
/// reading a backlog from the Kafka broker; then the raw baseline, pgbench updating the same
/// rows in transactions of the aggregator's batch size.
extension PostgresBenchmark {
    struct AggregatorFigures: Codable, Sendable {
        var replicas: Int
        var runs: Int
        var events: Int
        var partitions: Int
        var triggerSeconds: Double
        /// Start of the aggregators → every run recorded as succeeded.
        var seconds: Double
        var eventsPerSecond: Double
        var cpu: CPU
        var runsSucceeded: Int
    }

    struct RawUpdateFigures: Codable, Sendable {
        var rowsPerTransaction: Int
        var clients: Int
        var seconds: Int
        var transactionsPerSecond: Double
        var rowsPerSecond: Double
        var cpu: CPU
    }

    static let aggregatorPartitions: Int32 = 12

    /// Triggers `runCount` jobs, produces each run's `started` and `succeeded` events into a topic
    /// of the broker, then starts `replicas` aggregators, each assigned every `replicas`-th partition
    /// (what a consumer group would give them), and times them until every run has succeeded.
    /// With `pgbench`, the raw baseline follows on the same rows.
    static func measureAggregator(
        replicas: Int, runCount: Int, database: ScratchDatabase, kafka: KafkaTarget, pgbench: URL?,
        directory: URL, processes: PostgresProcesses?, logger: Logger
    ) async throws -> (AggregatorFigures, RawUpdateFigures?) {
        let setup = try await PostgresStore.connect(database.configuration, logger: logger)
        let fixture: PostgresJobFixture
        let runs: [Run]
        let triggerSeconds: Double
        do {
            progress("postgres: aggregator, \(replicas) replica(s): \(formatCount(runCount)) jobs and their runs")
            fixture = try await PostgresJobFixture.prepare(on: setup, jobCount: runCount)
            let start = ContinuousClock.now
            runs = try await concurrentMap(fixture.jobIds, concurrency: 64) { jobId in
                try await setup.triggerRun(jobId: jobId, trigger: .api, scheduledAt: nil, now: Date())
            }
            triggerSeconds = (ContinuousClock.now - start).seconds
            await setup.close()
        } catch {
            await setup.close()
            throw error
        }
        let key = HostEventKey(credential: fixture.hostCredential.value)
        let topics = BenchTopics()
        let now = Date()
        func event(_ run: Run, _ type: RunEventType, _ sequence: Int) throws -> OutgoingMessage {
            var message = try RunLifecycleEvent(
                type: type, runId: run.id, jobId: run.jobId, hostId: run.hostId, dispatchEpoch: run.dispatchEpoch,
                sequence: sequence, at: now, exitCode: type == .succeeded ? 0 : nil
            ).message(signedWith: key)
            message.topic = topics.runEvents
            return message
        }
        try await kafka.createTopics(topics.all, logger: logger)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(client: kafka.client("aggregator-producer")), logger: logger)
        let producing = RunningServices.start([producer], logger: logger)
        var stores: [PostgresStore] = []
        var aggregators: RunningServices?
        do {
            progress("postgres: aggregator, \(replicas) replica(s): producing \(formatCount(runs.count * 2)) events")
            // Each chunk's `started` events before its `succeeded` events: every run's in order.
            for chunkStart in stride(from: 0, to: runs.count, by: 1_000) {
                let chunk = runs[chunkStart..<min(chunkStart + 1_000, runs.count)]
                let messages = try chunk.map { try event($0, .started, 2) } + chunk.map { try event($0, .succeeded, 3) }
                for result in await producer.sendBatch(messages) {
                    if case .failure(let error) = result { throw BenchFailure("producing run events: \(error)") }
                }
            }
            for _ in 0..<replicas {
                stores.append(try await PostgresStore.connect(database.configuration, logger: logger))
            }
            var services: [any Service] = []
            for (index, store) in stores.enumerated() {
                let partitions = (0..<aggregatorPartitions).filter { Int($0) % replicas == index }.map {
                    TopicPartition(topic: topics.runEvents, partition: $0)
                }
                let consumer = try KafkaConsumer(
                    configuration: KafkaConsumerConfiguration(
                        client: kafka.client("aggregator-\(index)", consumer: true),
                        subscription: .assignment(
                            groupID: "bench-pg-aggregator-\(topics.suffix)", partitions: partitions),
                        bufferCapacity: 4096),
                    logger: logger)
                let aggregator = StatusAggregator(
                    store: store, consumer: consumer, producer: TopicRenamingProducer(base: producer, topics: topics),
                    logger: quietLogger("bench.aggregator"))
                services += [aggregator, consumer]
            }
            progress("postgres: aggregator, \(replicas) replica(s): applying")
            let before = CPU.Point.take(servers: [], postgres: processes)
            aggregators = RunningServices.start(services, logger: quietLogger("bench.services"))
            let succeeded = try await database.configuration.withConnection(logger: logger) { connection in
                let deadline = ContinuousClock.now + .seconds(300)
                while true {
                    let count =
                        try await PostgresStore.Configuration.texts(
                            "SELECT count(*)::text FROM runs WHERE status = 'succeeded'", on: connection, logger: logger
                        ).first.flatMap { Int($0) } ?? 0
                    if count >= runs.count || ContinuousClock.now > deadline { return count }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            let after = CPU.Point.take(servers: [], postgres: processes)
            try await aggregators?.stop()
            aggregators = nil
            for store in stores { await store.close() }
            stores = []
            try await producing.stop()
            if succeeded != runs.count {
                throw BenchFailure(
                    "\(formatCount(succeeded)) of \(formatCount(runs.count)) runs succeeded within 300 s")
            }
            let cpu = CPU(from: before, to: after, servers: [])
            let figures = AggregatorFigures(
                replicas: replicas, runs: runs.count, events: runs.count * 2, partitions: Int(aggregatorPartitions),
                triggerSeconds: triggerSeconds, seconds: cpu.wallSeconds,
                eventsPerSecond: Double(runs.count * 2) / cpu.wallSeconds, cpu: cpu, runsSucceeded: succeeded)
            guard let pgbench else { return (figures, nil) }
            return (
                figures,
                try await measureRawUpdates(
                    pgbench: pgbench, rows: runs.count, database: database, directory: directory, processes: processes)
            )
        } catch {
            try? await aggregators?.stop()
            for store in stores { await store.close() }
            try? await producing.stop()
            throw error
        }
    }

    /// pgbench updating `rows` runs (found by `seq`, as the aggregator writes them) in
    /// transactions of the aggregator's batch size, one client as one aggregator: what the database
    /// does without the aggregator reading and locking the runs first, or any client work.
    private static func measureRawUpdates(
        pgbench: URL, rows: Int, database: ScratchDatabase, directory: URL, processes: PostgresProcesses?
    ) async throws -> RawUpdateFigures {
        let perTransaction = StatusAggregator<KafkaConsumer>.Configuration().batchSize
        progress(
            "postgres: aggregator, raw baseline: pgbench, \(formatCount(perTransaction)) row updates per transaction")
        let span = min(perTransaction, rows)
        let script = """
            \\set first random(1, \(max(1, rows - span + 1)))
            UPDATE runs SET status = 'succeeded', started_at = queued_at + 1, finished_at = queued_at + 2, exit_code = 0,
                error_summary = NULL
            WHERE seq >= :first AND seq < :first + \(span);

            """
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("updates.pgbench.sql")
        try Data(script.utf8).write(to: file)
        let before = CPU.Point.take(servers: [], postgres: processes)
        let output = try await runPgbench(
            pgbench, arguments: ["-n", "-M", "prepared", "-f", file.path, "-c", "1", "-T", String(pgbenchSeconds)],
            database: database, errors: directory.appendingPathComponent("updates.pgbench.stderr"))
        let after = CPU.Point.take(servers: [], postgres: processes)
        guard let tps = pgbenchFigure(output, prefix: "tps = ") else {
            throw BenchFailure("pgbench printed no tps: \(output.suffix(1_500))")
        }
        return RawUpdateFigures(
            rowsPerTransaction: span, clients: 1, seconds: pgbenchSeconds, transactionsPerSecond: tps,
            rowsPerSecond: tps * Double(span), cpu: CPU(from: before, to: after, servers: []))
    }

    static func aggregatorText(_ cases: [AggregatorFigures], raw: RawUpdateFigures?) -> [(String, String)] {
        var lines: [(String, String)] = []
        let one = cases.first { $0.replicas == 1 }?.eventsPerSecond
        for figure in cases {
            var value = "\(formatRate(figure.eventsPerSecond)) events/s"
            if figure.replicas == 1, let raw {
                value += " = \(formatPercent(figure.eventsPerSecond / raw.rowsPerSecond)) of raw"
            }
            if figure.replicas > 1, let one {
                value += " = \(formatFixed(figure.eventsPerSecond / one, 2))x one replica"
            }
            lines.append(("aggregator: \(figure.replicas) replica(s) on PostgreSQL", value))
            lines.append(
                (
                    "  how",
                    "\(formatCount(figure.events)) events (started, succeeded) of \(formatCount(figure.runs)) runs waiting in"
                        + " \(figure.partitions) partitions; \(formatFixed(figure.seconds, 2)) s"
                ))
            lines.append(
                ("  CPU (the aggregators are bench)", cpuText(figure.cpu, operations: figure.events, serverName: nil)))
            lines.append(("  runs succeeded", formatCount(figure.runsSucceeded)))
        }
        if let raw {
            lines.append(
                (
                    "aggregator raw: pgbench UPDATE of runs by seq",
                    "\(formatRate(raw.rowsPerSecond)) rows/s (\(formatCount(raw.rowsPerTransaction)) rows per transaction,"
                        + " \(formatFixed(raw.transactionsPerSecond, 1)) tps, \(raw.clients) client, \(raw.seconds) s)"
                ))
            lines.append(
                (
                    "  CPU (pgbench counted in other)",
                    cpuText(raw.cpu, operations: Int(raw.rowsPerSecond * Double(raw.seconds)), serverName: nil)
                ))
        }
        return lines
    }
}
