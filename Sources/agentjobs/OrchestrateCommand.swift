import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsKafka
import AgentJobsOrchestrator
import AgentJobsTelemetry
import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle

/// `agentjobs orchestrate`: the worker on each host.
struct OrchestrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orchestrate",
        abstract: "Run this host's orchestrator: read its dispatch commands from Kafka and run agents.",
        discussion: "Register the host first with `agentjobs host register`. Settings: see docs/configuration.md.")

    @Option(help: "Settings file of AGENTJOBS_NAME=value lines (env AGENTJOBS_CONFIG).")
    var config: String?

    @Option(help: "The orchestrator's data dir: host identity, run journal and logs (AGENTJOBS_DATA_DIR).")
    var dataDir: String?

    @Option(help: "process or docker (AGENTJOBS_DRIVER; default process).")
    var driver: String?

    @Flag(
        help:
            "Retire this host: stop every agent (SIGTERM, grace, SIGKILL), report its run canceled, publish, and exit. Stop the orchestrator service first."
    )
    var drain = false

    func run() async throws {
        let logger = makeLogger("agentjobs.orchestrator")
        var settings = try Settings.load(configFile: config)
        settings.override("AGENTJOBS_DATA_DIR", with: dataDir, flagName: "--data-dir")
        settings.override("AGENTJOBS_DRIVER", with: driver, flagName: "--driver")
        let directory = try settings.dataDirectory(default: ".agentjobs-host")
        let identity: HostIdentity
        do {
            identity = try HostIdentity.load(from: directory)
        } catch let error as OrchestratorError {
            throw CLIError(error.message)
        }
        let kafka = try settings.kafkaClient(clientID: "agentjobs-orchestrate-\(identity.hostId)")
        let partitions = try await KafkaTopology.partitionCount(
            of: Topic.dispatch, settings, client: kafka, logger: logger)
        let partition = KafkaPartitioner.partition(forKey: identity.hostId, partitionCount: partitions)
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                client: kafka,
                subscription: .assignment(
                    groupID: "agentjobs-host-\(identity.hostId)",
                    partitions: [TopicPartition(topic: Topic.dispatch, partition: partition)],
                    keyFilter: Array(identity.hostId.utf8))),
            logger: logger)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: kafka), logger: logger)
        let worker = try await HostRuntime.makeWorker(
            identity: identity, directory: directory, settings: settings, consumer: consumer, producer: producer,
            logger: logger)
        if drain {
            let drainer = Drainer(worker: worker, logger: logger)
            // The producer runs (and flushes on the way out) while the drain stops every agent.
            let group = ServiceGroup(
                configuration: .init(
                    services: [
                        .init(service: producer),
                        .init(service: drainer, successTerminationBehavior: .gracefullyShutdownGroup),
                    ],
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            return
        }
        logger.info(
            "reading dispatch",
            metadata: ["partition": "\(Topic.dispatch)[\(partition)]", "host_name": "\(identity.name)"])
        MetricsExposition.addCollector {
            // Each host has a group of its own; its id stays out of the label (bounded label sets),
            // the scrape's target tells hosts apart.
            ConsumerLagMetrics.record(group: "agentjobs-host", consumer.lag())
            await worker.collectMetrics()
        }
        let readiness = Readiness(checks: [ReadinessCheck("broker") { await producer.checkBroker() }])
        let admin = try AdminEndpoint.application(
            settings, defaultAddress: "127.0.0.1:9182", readiness: readiness, logger: logger)
        // The admin endpoint and then the consumer stop first (its sequence ends, which ends the
        // worker); the producer flushes last.
        try await runServices([producer, worker, consumer, admin], role: "orchestrate", logger: logger)
    }
}

/// Runs ``HostWorker/drain()`` once and ends.
private struct Drainer<Consumer: MessageConsumer>: Service {
    let worker: HostWorker<Consumer>
    let logger: Logger

    func run() async throws {
        logger.notice("draining: stopping every agent of this host and canceling its runs")
        let canceled = try await worker.drain()
        logger.notice("drained", metadata: ["runs_canceled": "\(canceled)"])
    }
}
