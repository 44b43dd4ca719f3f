import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsKafka
import AgentJobsOrchestrator
import AgentJobsStore
import AgentJobsTelemetry
import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// `agentjobs dev`: the embedded shape — control plane, scheduler, relay, aggregator, host tracking
/// and a local orchestrator in one process, on SQLite, with the embedded message log in the same
/// database in place of Kafka.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract:
            "Run the whole system in one process on this machine (SQLite, API and UI on 127.0.0.1, local orchestrator)."
    )

    @Option(help: "Directory for the database, the admin token, the local host and run logs (AGENTJOBS_DATA_DIR).")
    var dataDir: String?

    @Option(help: "Port of the API and UI on 127.0.0.1 (0 picks a free one).")
    var httpPort: Int = 8080

    func run() async throws {
        let logger = makeLogger("agentjobs.dev")
        var settings = try Settings.load(configFile: nil)
        settings.override("AGENTJOBS_DATA_DIR", with: dataDir, flagName: "--data-dir")
        let directory = try settings.dataDirectory(default: ".agentjobs")
        let makeRunRetention = try RoleComponents.runRetention(settings)
        let store = try SQLiteStore(path: directory.appendingPathComponent("agentjobs.sqlite").path)
        let tokenFile = directory.appendingPathComponent("admin-token")
        if (try? String(contentsOf: tokenFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            .isEmpty ?? true
        {
            try await EmbeddedSetup.createAdminToken(store: store, tokenFile: tokenFile)
        }
        let (signingKey, _) = try SigningKeyFile.loadOrCreate(
            path: directory.appendingPathComponent("dispatch-signing.key").path, setting: "--data-dir")
        let hostDirectory = directory.appendingPathComponent("host")
        let identity = try await EmbeddedSetup.localHost(store: store, directory: hostDirectory, signingKey: signingKey)

        let log = SQLiteMessageLog(sharing: store.database)
        let producer = SQLiteMessageProducer(log: log)
        // The host reads its dispatch partition by assignment, which creates no topic: created here,
        // else its consumer finds no partition to read until the relay's first dispatch creates it.
        _ = try await log.createTopic(Topic.dispatch, partitionCount: log.configuration.defaultPartitionCount)
        let dispatchPartition = try await log.partition(forKey: Array(identity.hostId.utf8), inTopic: Topic.dispatch)
        func consumer(_ subscription: ConsumerSubscription, bufferCapacity: Int = 256) -> SQLiteMessageConsumer {
            SQLiteMessageConsumer(
                log: log,
                configuration: SQLiteMessageConsumerConfiguration(
                    subscription: subscription, bufferCapacity: bufferCapacity),
                logger: logger)
        }
        // The aggregator takes its batches (up to 2,000 events) from its consumer's buffer: room for two.
        let events = consumer(.group(id: "agentjobs-aggregator", topics: [Topic.runEvents]), bufferCapacity: 4096)
        let heartbeats = consumer(.group(id: "agentjobs-host-tracker", topics: [Topic.hostEvents]))
        let dispatch = consumer(
            .assignment(
                groupID: "agentjobs-host-\(identity.hostId)",
                partitions: [TopicPartition(topic: Topic.dispatch, partition: dispatchPartition)],
                keyFilter: Array(identity.hostId.utf8)))

        let relay = RoleComponents.relay(store: store, producer: producer, signingKey: signingKey)
        let aggregator = RoleComponents.aggregator(store: store, consumer: events, producer: producer)
        let tracker = try RoleComponents.hostTracker(
            store: store, consumer: heartbeats, producer: producer, settings,
            hostEventsPartitions: try await log.createTopic(
                Topic.hostEvents, partitionCount: log.configuration.defaultPartitionCount),
            trackerId: "dev-\(ProcessInfo.processInfo.processIdentifier)")
        let worker = try await HostRuntime.makeWorker(
            identity: identity, directory: hostDirectory, settings: settings, consumer: dispatch, producer: producer,
            logger: makeLogger("agentjobs.orchestrator"))
        let scheduler = RoleComponents.scheduler(store: store)
        let webhooks = try RoleComponents.webhookSender(store: store, settings)
        let app = try RoleComponents.controlPlane(
            store: store, settings, signingKey: signingKey, host: "127.0.0.1", port: httpPort,
            logger: logger,
            onServerRunning: { port in
                FileHandle.standardOutput.write(
                    Data(
                        """

                        AgentJobs is running at http://127.0.0.1:\(port)/
                          data dir:     \(directory.path)
                          admin token:  \(tokenFile.path)
                          local host:   \(identity.hostId) (runs agents from \(hostDirectory.path)/runs)
                        Try:
                          export AGENTJOBS_URL=http://127.0.0.1:\(port) AGENTJOBS_TOKEN=$(cat \(tokenFile.path))
                          agentjobs hosts list
                        Press Ctrl-C to stop.

                        """.utf8))
            })
        // Shut down in reverse: stop taking requests, stop reading (the consumers' sequences end,
        // which ends the worker, tracker and aggregator), then scheduling and relaying.
        let retention = LogRetention(
            log: log, age: try settings.seconds("AGENTJOBS_LOG_RETENTION_SECONDS", default: 7 * 24 * 3600),
            interval: .seconds(3600), logger: logger)
        let outboxRetention = try RoleComponents.outboxRetention(store: store, settings)
        let runRetention = makeRunRetention?(store)
        MetricsExposition.addCollector {
            await worker.collectMetrics()
            do {
                for (group, lag) in try await log.consumerLag() { ConsumerLagMetrics.record(group: group, lag) }
            } catch {
                logger.warning("could not read consumer lag for the metrics", metadata: ["error": "\(error)"])
            }
        }
        let services: [(any Service)?] = [
            retention, outboxRetention, runRetention, relay, scheduler, webhooks, aggregator, tracker, worker, events,
            heartbeats, dispatch, app,
        ]
        try await runServices(services.compactMap { $0 }, role: "dev", logger: logger)
        await log.close()
        await store.close()
    }
}

/// `agentjobs serve`: the control plane (API, UI, scheduler, outbox relay) against the configured
/// database and Kafka.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the control plane: API and UI, scheduler, and the outbox relay to Kafka.",
        discussion: "Settings come from --config FILE, then the environment, then flags; see docs/configuration.md.")

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Address to listen on, HOST:PORT (AGENTJOBS_HTTP_ADDRESS; default 127.0.0.1:8080).")
    var httpAddress: String?

    func run() async throws {
        let logger = makeLogger("agentjobs.serve")
        var settings = try database.settings()
        settings.override("AGENTJOBS_HTTP_ADDRESS", with: httpAddress, flagName: "--http-address")
        let (host, port) = try settings.address("AGENTJOBS_HTTP_ADDRESS", default: "127.0.0.1:8080")
        let makeRunRetention = try RoleComponents.runRetention(settings)
        let dataDir = try settings.dataDirectory(default: ".agentjobs")
        let keyPath =
            settings["AGENTJOBS_SIGNING_KEY_FILE"] ?? dataDir.appendingPathComponent("dispatch-signing.key").path
        let (signingKey, created) = try SigningKeyFile.loadOrCreate(
            path: keyPath, setting: settings.origin("AGENTJOBS_SIGNING_KEY_FILE"))
        if created { logger.notice("created a new dispatch-signing key", metadata: ["path": "\(keyPath)"]) }
        let kafka = try settings.kafkaClient(clientID: "agentjobs-serve")
        let store = try await openStore(settings)
        try await KafkaTopology.ensure(settings, client: kafka, logger: logger)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: kafka), logger: logger)

        let relay = RoleComponents.relay(store: store, producer: producer, signingKey: signingKey)
        let app = try RoleComponents.controlPlane(
            store: store, settings, signingKey: signingKey, host: host, port: port,
            // No broker check: during a Kafka outage the API keeps working on the database (runs
            // queue in the outbox), so a replica must stay in the load balancer's rotation.
            readinessChecks: [], logger: logger,
            onServerRunning: { port in logger.info("control plane listening", metadata: ["address": "\(host):\(port)"])
            })
        let scheduler = RoleComponents.scheduler(store: store)
        let outboxRetention = try RoleComponents.outboxRetention(store: store, settings)
        let runRetention = makeRunRetention?(store)
        // Shut down in reverse: stop taking requests, then scheduling, then relaying, then flush Kafka.
        let webhooks = try RoleComponents.webhookSender(store: store, settings)
        let services: [(any Service)?] = [producer, outboxRetention, runRetention, relay, scheduler, webhooks, app]
        try await runServices(services.compactMap { $0 }, role: "serve", logger: logger)
        await store.close()
    }
}

/// `agentjobs aggregate`: folds run events into the store and tracks host liveness.
struct AggregateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aggregate",
        abstract: "Run the status aggregator and host tracking (consumer groups on run and host events).",
        discussion: "Run several replicas to scale; settings as for serve (see docs/configuration.md).")

    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        let logger = makeLogger("agentjobs.aggregate")
        let settings = try database.settings()
        let kafka = try settings.kafkaClient(clientID: "agentjobs-aggregate")
        let store = try await openStore(settings)
        try await KafkaTopology.ensure(settings, client: kafka, logger: logger)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: kafka), logger: logger)
        // A restarted or replaced replica gets its partitions back once the group drops the old
        // member: within the session timeout (librdkafka's default of 45 s would hold the run events
        // of a killed replica that long). Static membership where the broker supports it.
        let session = try settings.seconds("AGENTJOBS_GROUP_SESSION_TIMEOUT_SECONDS", default: 10)
        let instance = settings["AGENTJOBS_GROUP_INSTANCE_ID"]
        func membership(_ role: String) -> KafkaConsumerConfiguration.GroupMembership {
            .init(
                sessionTimeout: session, heartbeatInterval: min(.seconds(1), session / 3),
                instanceID: instance.map { "\($0)-\(role)" })
        }
        let events = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                client: kafka,
                subscription: .group(
                    id: settings["AGENTJOBS_AGGREGATOR_GROUP"] ?? "agentjobs-aggregator", topics: [Topic.runEvents]),
                bufferCapacity: 4096, membership: membership("aggregator")),
            logger: logger)
        let heartbeats = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                client: kafka,
                subscription: .group(
                    id: settings["AGENTJOBS_HOST_TRACKER_GROUP"] ?? "agentjobs-host-tracker", topics: [Topic.hostEvents]
                ), membership: membership("host-tracker")),
            logger: logger)
        let aggregator = RoleComponents.aggregator(store: store, consumer: events, producer: producer)
        let tracker = try RoleComponents.hostTracker(
            store: store, consumer: heartbeats, producer: producer, settings,
            hostEventsPartitions: try await KafkaTopology.partitionCount(
                of: Topic.hostEvents, settings, client: kafka, logger: logger),
            trackerId: "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)")
        MetricsExposition.addCollector {
            ConsumerLagMetrics.record(group: events.groupID, events.lag())
            ConsumerLagMetrics.record(group: heartbeats.groupID, heartbeats.lag())
        }
        let readiness = Readiness(checks: [
            .store(store), ReadinessCheck("broker") { await producer.checkBroker() },
            // Ready while it owns a partition of either topic: host-events has fewer partitions than
            // run-events, so a replica may do only run events, which is work all the same.
            ReadinessCheck("consumers") {
                guard events.assignment.isEmpty && heartbeats.assignment.isEmpty else { return nil }
                return "no partition of \(Topic.runEvents) or \(Topic.hostEvents) assigned to this replica yet "
                    + "(the groups are rebalancing, or there are more replicas than partitions)"
            },
        ])
        let admin = try AdminEndpoint.application(
            settings, defaultAddress: "127.0.0.1:9181", readiness: readiness, logger: logger)
        // Consumers come last so they stop first: their message sequences end, which ends the
        // aggregator and tracker loops; the producer flushes last. The admin endpoint stops first.
        try await runServices(
            [producer, aggregator, tracker, events, heartbeats, admin], role: "aggregate", logger: logger)
        await store.close()
    }
}

/// Runs long-lived services until SIGTERM/SIGINT, then shuts them down gracefully in reverse order.
/// With `role`, the role's tracing exporter (``RunTracing``) comes first, so that it stops last and
/// exports the spans of everything else's shutdown.
///
/// The graceful shutdown is bounded by ``gracefulStopLimit``: what has not stopped by then is
/// cancelled. A service waits on its work while it stops (the server on its requests, the
/// aggregator on its batch), and that work may wait on a database that stalls for up to an
/// operation's limit (a minute); cancelled, a store operation is given up within a second. The
/// cancellation reaches every service left at once, so the order is lost then (the tracing exporter
/// may miss the last spans). A cancelled role loses nothing a `kill -9` would not: what was not
/// committed is done again after the restart.
func runServices(_ services: [any Service], role: String? = nil, logger: Logger) async throws {
    let deadline = ShutdownDeadline(limit: gracefulStopLimit, logger: logger)
    defer { deadline.disarm() }
    var services: [any Service] = services + [deadline]
    if let role {
        do {
            if let tracing = try RunTracing.bootstrap(role: role, environment: ProcessInfo.processInfo.environment) {
                services.insert(tracing, at: 0)
                logger.info("exporting traces over OTLP", metadata: ["service": "agentjobs-\(role)"])
            }
        } catch {
            throw CLIError("tracing (OTEL_* settings): \(error)")
        }
    }
    var configuration = ServiceGroupConfiguration(
        services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    configuration.maximumGracefulShutdownDuration = gracefulStopLimit
    do {
        try await ServiceGroup(configuration: configuration).run()
    } catch is CancellationError where deadline.isStopping {
        // A service cancelled at the limit ended with CancellationError: a stop all the same (the
        // group waited for the others), and what it had not committed is read again after a restart.
    }
}

/// How long a role's services have to stop after SIGTERM/SIGINT before they are cancelled.
let gracefulStopLimit: Duration = .seconds(10)

/// The last service of a role, so the first to be told to stop: it says that the role is stopping,
/// and warns when the services are still stopping at about `limit` (the group then cancels them;
/// its timer starts a moment before this one).
final class ShutdownDeadline: Service {
    let limit: Duration
    let logger: Logger
    private let warning = Mutex<Task<Void, Never>?>(nil)
    private let stopping = Atomic<Bool>(false)

    /// Whether the role was told to stop.
    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    init(limit: Duration, logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    func run() async throws {
        // Cancelled instead (a service failed): not a stop, and its errors are not to be hidden.
        guard (try? await gracefulShutdown()) != nil, !Task.isCancelled else { return }
        stopping.store(true, ordering: .relaxed)
        logger.info("stopping", metadata: ["limit": "\(limit)"])
        // Unstructured: this service must end now for the others to be told to stop.
        let task = Task { [limit, logger] in
            guard (try? await Task.sleep(for: limit)) != nil else { return }
            logger.warning(
                "still stopping after the limit: cancelling what is left (store operations under way are given up)",
                metadata: ["limit": "\(limit)"])
        }
        warning.withLock { $0 = task }
    }

    /// The services have stopped: no warning.
    func disarm() {
        warning.withLock { $0?.cancel() }
    }
}

func makeLogger(_ label: String) -> Logger { LogFormat.logger(label) }

/// A failure the CLI reports in one line, exiting with `status` (``ExitStatus``).
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var status: Int32
    init(_ message: String, status: Int32 = ExitStatus.failure) {
        self.message = message
        self.status = status
    }
    var description: String { message }
}
