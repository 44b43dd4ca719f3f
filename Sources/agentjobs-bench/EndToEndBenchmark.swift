import AgentJobsAggregator
import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsKafka
import AgentJobsOrchestrator
import AgentJobsSQLite
import AgentJobsStore
import Foundation
import Logging
import ServiceLifecycle

/// Issue #5: trigger → `running` and trigger → `succeeded` for runs spread over many hosts, with
/// the real pipeline in one process: `SQLiteStore.triggerRun` (what the API handler calls) and an
/// outbox wake-up, `OutboxRelay`, the transport, one `HostWorker` per host with its own dispatch
/// consumer, journal and `ProcessDriver`, and `StatusAggregator` writing the statuses back.
enum EndToEndBenchmark {
    static let goalRunningP50 = 20.0
    static let goalRunningP99 = 100.0
    static let statusChanged = "run status changed"
    static let agentStarted = "agent started"

    struct TransportFigures: Codable, Sendable {
        var transport: String
        var runs: Int
        var hosts: Int
        /// Triggers per second, paced.
        var rate: Double
        /// The `triggerRun` call itself (commit of run + outbox row).
        var triggerCall: LatencyFigure
        /// Trigger → the host logged "agent started" (journaled and `started` published).
        var triggerToAgentStarted: LatencyFigure
        /// Trigger → the aggregator committed `running`.
        var triggerToRunning: LatencyFigure
        /// Trigger → the aggregator committed `succeeded`.
        var triggerToSucceeded: LatencyFigure
        /// First trigger → last run succeeded, with CPU.
        var span: RateFigure
        var runsSucceeded: Int
    }

    struct Figures: Codable, Sendable {
        var runs: Int
        var hosts: Int
        var rate: Double
        var agent: String
        var fixtureSeconds: Double
        /// One-row durable SQLite commits on this disk, measured just before: the unit most steps
        /// of the pipeline wait for (run + outbox, journal, log append, status).
        var durableCommit: RawSQLiteBaseline.Figure
        var embedded: TransportFigures?
        var kafka: TransportFigures?
        var kafkaSkipped: String?
        var failures: [String]
    }

    static func run(
        directory: URL, runs: Int, hosts: Int, rate: Double, kafka: KafkaTarget?, progress: (String) -> Void
    ) async throws -> Figures {
        progress("e2e: creating \(hosts) hosts and \(runs) jobs")
        let fixture = try await PipelineFixture.prepare(
            directory: directory.appendingPathComponent("fixture"), hostCount: hosts, jobCount: runs, trigger: false)
        let agent = try NoopAgent.write(in: directory.appendingPathComponent("agents"))
        let commit = try await offPool {
            try RawSQLiteBaseline.measure(
                path: directory.appendingPathComponent("commit.sqlite").path, rows: 5_000, rowsPerTransaction: 1,
                timeLimit: .seconds(1))
        }
        var figures = Figures(
            runs: runs, hosts: hosts, rate: rate, agent: "\(agent.path) (#!/bin/sh, exit 0)",
            fixtureSeconds: fixture.setupSeconds, durableCommit: commit, failures: [])

        progress("e2e: embedded log, \(runs) triggers at \(formatRate(rate))/s over \(hosts) hosts")
        let embeddedDirectory = directory.appendingPathComponent("embedded")
        let embedded = try await measure(
            transport: "embedded SQLite log", directory: embeddedDirectory,
            path: fixture.copy(to: embeddedDirectory), fixture: fixture, rate: rate, agent: agent
        ) { store in
            let log = SQLiteMessageLog(sharing: store.database)
            let events = SQLiteMessageConsumer(
                log: log,
                configuration: .init(subscription: .group(id: "agentjobs-aggregator", topics: [Topic.runEvents])),
                logger: quietLogger("bench.consumer"))
            var dispatch: [SQLiteMessageConsumer] = []
            for host in fixture.hosts {
                let partition = try await log.partition(forKey: Array(host.id.utf8), inTopic: Topic.dispatch)
                dispatch.append(
                    SQLiteMessageConsumer(
                        log: log,
                        configuration: .init(
                            subscription: .assignment(
                                groupID: "agentjobs-host-\(host.id)",
                                partitions: [TopicPartition(topic: Topic.dispatch, partition: partition)],
                                keyFilter: Array(host.id.utf8))),
                        logger: quietLogger("bench.consumer")))
            }
            return Pipeline(
                producer: SQLiteMessageProducer(log: log), services: [], events: events, dispatch: dispatch,
                ready: { !events.assignment.isEmpty })
        }
        figures.embedded = embedded.figures
        figures.failures += embedded.failures

        guard let kafka else {
            figures.kafkaSkipped = KafkaTarget.skipReason
            return figures
        }
        let topics = BenchTopics()
        let logger = quietLogger("bench.kafka")
        try await kafka.createTopics(topics.all, logger: logger)
        progress("e2e: Kafka on \(kafka.description), \(runs) triggers at \(formatRate(rate))/s over \(hosts) hosts")
        let kafkaDirectory = directory.appendingPathComponent("kafka")
        let overKafka = try await measure(
            transport: "Kafka (\(kafka.description))", directory: kafkaDirectory,
            path: fixture.copy(to: kafkaDirectory), fixture: fixture, rate: rate, agent: agent
        ) { _ in
            let producer = try KafkaProducer(
                configuration: kafka.producer("e2e-producer"), logger: logger)
            let events = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    client: kafka.client("e2e-aggregator", consumer: true),
                    subscription: .group(id: "bench-e2e-aggregator-\(topics.suffix)", topics: [topics.runEvents]),
                    bufferCapacity: 4096),
                logger: logger)
            let partitions = topics.all[topics.dispatch]!
            var dispatch: [KafkaConsumer] = []
            for host in fixture.hosts {
                // As `agentjobs orchestrate` reads its partition: manual assignment, key filter.
                let partition = KafkaAdmin.partition(forKey: host.id, partitionCount: partitions)
                dispatch.append(
                    try KafkaConsumer(
                        configuration: KafkaConsumerConfiguration(
                            client: kafka.client(
                                "e2e-host", consumer: true, extra: KafkaTarget.hostConsumerProperties),
                            subscription: .assignment(
                                groupID: "bench-host-\(host.id)",
                                partitions: [TopicPartition(topic: topics.dispatch, partition: partition)],
                                keyFilter: Array(host.id.utf8))),
                        logger: logger))
            }
            return Pipeline(
                producer: TopicRenamingProducer(base: producer, topics: topics), services: [producer],
                events: events, dispatch: dispatch, ready: { !events.assignment.isEmpty })
        }
        figures.kafka = overKafka.figures
        figures.failures += overKafka.failures
        return figures
    }

    struct Pipeline<Consumer: MessageConsumer & Service> {
        /// Shared by the relay, the aggregator and every host (one process here).
        var producer: any MessageProducer
        var services: [any Service]
        var events: Consumer
        /// One per host, in the fixture's host order.
        var dispatch: [Consumer]
        var ready: @Sendable () -> Bool
    }

    private struct Trigger: Sendable {
        var runId: String
        var at: ContinuousClock.Instant
        var call: Duration
    }

    private static func measure<Consumer: MessageConsumer & Service>(
        transport name: String, directory: URL, path: String, fixture: PipelineFixture, rate: Double, agent: URL,
        makePipeline: (SQLiteStore) async throws -> Pipeline<Consumer>
    ) async throws -> (figures: TransportFigures, failures: [String]) {
        let stamps = LogStamps(watching: [statusChanged, agentStarted])
        let signingKey = DispatchSigningKey()
        let commands = NoOpAgent.catalog(agent.path)
        let figures = try await withStore(path) { store in
            let pipeline = try await makePipeline(store)
            let relay = OutboxRelay(
                store: store, producer: pipeline.producer, signingKey: signingKey, logger: quietLogger("bench.relay"))
            let aggregator = StatusAggregator(
                store: store, consumer: pipeline.events, producer: pipeline.producer,
                logger: stamps.logger("bench.aggregator"))
            var workers: [any Service] = []
            for (host, consumer) in zip(fixture.hosts, pipeline.dispatch) {
                let journal = try RunJournal(dataDirectory: directory.appendingPathComponent("hosts/\(host.id)"))
                let identity = HostIdentity(
                    controlPlaneURL: "in-process", hostId: host.id, name: host.id, credential: host.credential.value,
                    signingPublicKey: signingKey.verifier.base64, managedAgents: [.datahealth])
                workers.append(
                    try HostWorker(
                        identity: identity, consumer: consumer, producer: pipeline.producer,
                        driver: NoOpAgent.driver(journal.runsDirectory), journal: journal,
                        makeLaunch: { dispatch, runDirectory in
                            try NoOpAgent.launch(commands, dispatch, runDirectory)
                        },
                        summarize: { dispatch, runDirectory, exitCode in
                            RunSummary.build(dispatch: dispatch, runDirectory: runDirectory, exitCode: exitCode)
                        },
                        logger: stamps.logger("bench.host")))
            }
            // Shut down in reverse, as `agentjobs dev` does: consumers first, which ends the workers
            // and the aggregator, then the relay and the producer.
            let services = RunningServices.start(
                pipeline.services + [relay, aggregator] + workers + [pipeline.events] + pipeline.dispatch,
                logger: quietLogger("bench.services"))
            let outcome = await capture {
                try await waitUntil("the aggregator's consumer to own its partitions", timeout: .seconds(60)) {
                    pipeline.ready()
                }
                return try await drive(store: store, fixture: fixture, rate: rate, stamps: stamps)
            }
            try await services.stop()
            return try outcome.get()
        }
        var result = figures
        result.transport = name
        result.runsSucceeded = Int(
            try await offPool {
                try SQLiteConnection(path: path).count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
            })
        var failures: [String] = []
        if result.runsSucceeded != fixture.jobIds.count {
            failures.append("e2e (\(name)): \(result.runsSucceeded) of \(fixture.jobIds.count) runs succeeded")
        }
        return (result, failures)
    }

    /// Triggers every job once at `rate` per second (each trigger on its own task at its due
    /// time, so a slow call does not delay the next) and waits until every run succeeded.
    private static func drive(
        store: SQLiteStore, fixture: PipelineFixture, rate: Double, stamps: LogStamps
    ) async throws -> TransportFigures {
        let pid = getpid()
        let before = CPUSample.take(pids: [pid])
        let start = ContinuousClock.now
        let jobIds = fixture.jobIds
        let triggers = try await withThrowingTaskGroup(of: Trigger.self) { group in
            for (index, jobId) in jobIds.enumerated() {
                let due = start + .seconds(Double(index) / rate)
                if due > .now { try await Task.sleep(until: due) }
                group.addTask {
                    let at = ContinuousClock.now
                    let run = try await store.triggerRun(jobId: jobId, trigger: .api, scheduledAt: nil, now: Date())
                    let call = ContinuousClock.now - at
                    return Trigger(runId: run.id, at: at, call: call)
                }
            }
            var triggers: [Trigger] = []
            for try await trigger in group { triggers.append(trigger) }
            return triggers
        }
        try await waitUntil("every run to succeed", timeout: .seconds(180), interval: .milliseconds(10)) {
            stamps.count(statusChanged, status: RunStatus.succeeded.rawValue) >= jobIds.count
        }
        let applied = stamps.firstByRun(statusChanged)
        let started = stamps.firstByRun(agentStarted)
        let end = triggers.compactMap { applied[$0.runId + "|succeeded"] }.max() ?? .now
        let after = CPUSample.take(pids: [pid])
        func latencies(_ stamps: [String: ContinuousClock.Instant], _ suffix: String) -> LatencyFigure {
            LatencyFigure(
                milliseconds: triggers.compactMap { trigger in
                    stamps[trigger.runId + suffix].map { ($0 - trigger.at).milliseconds }
                })
        }
        let seconds = (end - start).seconds
        return TransportFigures(
            transport: "", runs: jobIds.count, hosts: fixture.hosts.count, rate: rate,
            triggerCall: LatencyFigure(milliseconds: triggers.map(\.call.milliseconds)),
            triggerToAgentStarted: latencies(started, "|"), triggerToRunning: latencies(applied, "|running"),
            triggerToSucceeded: latencies(applied, "|succeeded"),
            span: RateFigure(
                count: jobIds.count, seconds: seconds,
                cpu: CPUUsage(from: before, to: after, wallSeconds: seconds, serverPid: nil, benchPid: pid)),
            runsSucceeded: 0)
    }

    static func text(_ figures: Figures) -> String {
        var lines = [
            "End to end (issue #5): \(formatCount(figures.runs)) runs over \(figures.hosts) in-process hosts,"
                + " triggered at \(formatRate(figures.rate))/s; process driver, agent \(figures.agent)"
        ]
        func add(_ label: String, _ value: String) { lines.append(reportLine(label, value)) }
        let commit = figures.durableCommit
        add(
            "raw SQLite, 1 INSERT per transaction (fsync)",
            "\(formatRate(commit.rowsPerSecond)) commits/s = \(formatFixed(1000 / max(commit.rowsPerSecond, 1), 2)) ms each"
        )
        for transport in [figures.embedded, figures.kafka].compactMap({ $0 }) {
            lines.append("  via \(transport.transport):")
            add("  triggerRun call (run + outbox commit)", transport.triggerCall.text)
            add("  trigger → host logged \"agent started\"", transport.triggerToAgentStarted.text)
            add("  trigger → running (aggregator committed)", transport.triggerToRunning.text)
            add("  trigger → succeeded (aggregator committed)", transport.triggerToSucceeded.text)
            add("  first trigger → last succeeded", transport.span.text("runs"))
            let running = transport.triggerToRunning
            let met = running.p50 <= goalRunningP50 && running.p99 <= goalRunningP99
            add(
                "  goal trigger → running p50 <= \(Int(goalRunningP50)) ms, p99 <= \(Int(goalRunningP99)) ms",
                met ? "met" : "NOT met")
        }
        if let skipped = figures.kafkaSkipped { add("Kafka", "skipped: \(skipped)") }
        for failure in figures.failures { lines.append("  FAILED: \(failure)") }
        return lines.joined(separator: "\n")
    }
}

/// The no-op agent: a `#!/bin/sh` script that exits 0.
enum NoopAgent {
    static func write(in directory: URL) throws -> URL {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let script = directory.appendingPathComponent("noop.sh")
        try Data("#!/bin/sh\nexit 0\n".utf8).write(to: script)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        return script
    }
}
