import AgentJobsAggregator
import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsStore
import AgentJobsTelemetry
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// The components the roles are assembled from, each built in one place from the settings, so
/// that `dev`, `serve` and `aggregate` cannot configure the same component differently.
///
/// The relay wakes on the outbox rows its process's store appends (``Store/onOutboxAppended(_:)``);
/// rows written in a process without a relay (`aggregate`) are found by the relay's polling.
enum RoleComponents {
    /// How long a host may be silent before it shows offline (`AGENTJOBS_HOST_OFFLINE_GRACE_SECONDS`).
    static func offlineGrace(_ settings: Settings) throws -> Duration {
        try settings.seconds("AGENTJOBS_HOST_OFFLINE_GRACE_SECONDS", default: 30)
    }

    /// Publishes outbox rows (dispatches and cancels) to the transport, signed with `signingKey`.
    static func relay(
        store: any Store, producer: any MessageProducer, signingKey: DispatchSigningKey
    ) -> OutboxRelay {
        OutboxRelay(store: store, producer: producer, signingKey: signingKey, logger: makeLogger("agentjobs.relay"))
    }

    /// Triggers runs of cron schedules.
    static func scheduler(store: any Store) -> Scheduler {
        Scheduler(store: store, logger: makeLogger("agentjobs.scheduler"))
    }

    /// Sends webhook deliveries, each request given `AGENTJOBS_WEBHOOK_TIMEOUT_SECONDS` (default 10).
    static func webhookSender(store: any Store, _ settings: Settings) throws -> WebhookSender {
        var configuration = WebhookSender.Configuration()
        configuration.requestTimeout = .seconds(
            try settings.integer("AGENTJOBS_WEBHOOK_TIMEOUT_SECONDS", default: 10, in: 1...300))
        return WebhookSender(
            store: store, configuration: configuration, logger: makeLogger("agentjobs.webhooks"))
    }

    /// Deletes sent outbox rows older than `AGENTJOBS_OUTBOX_RETENTION_SECONDS` (default 7 days).
    static func outboxRetention(store: any Store, _ settings: Settings) throws -> OutboxRetention {
        OutboxRetention(
            store: store, age: try settings.seconds("AGENTJOBS_OUTBOX_RETENTION_SECONDS", default: 7 * 24 * 3600),
            logger: makeLogger("agentjobs.outbox-retention"))
    }

    /// Deletes runs that ended more than `AGENTJOBS_RUN_RETENTION_DAYS` ago (default 90), except the
    /// newest `AGENTJOBS_RUN_RETENTION_KEEP_PER_JOB` (default 30) of each job that still exists, and
    /// audit entries older than `AGENTJOBS_AUDIT_RETENTION_DAYS` (default 365); 0 days keeps them.
    /// Read before anything is opened, so a bad value stops the role at once.
    /// - Returns: What builds the service on a store; nil when both are kept for ever.
    static func runRetention(_ settings: Settings) throws -> (@Sendable (any Store) -> RunRetention)? {
        let runDays = try settings.integer("AGENTJOBS_RUN_RETENTION_DAYS", default: 90, in: 0...36_500)
        let keep = try settings.integer("AGENTJOBS_RUN_RETENTION_KEEP_PER_JOB", default: 30, in: 0...1_000_000)
        let auditDays = try settings.integer("AGENTJOBS_AUDIT_RETENTION_DAYS", default: 365, in: 0...36_500)
        guard runDays > 0 || auditDays > 0 else { return nil }
        let runAge: Duration? = runDays > 0 ? .seconds(runDays * 24 * 3600) : nil
        let auditAge: Duration? = auditDays > 0 ? .seconds(auditDays * 24 * 3600) : nil
        return { store in
            RunRetention(
                store: store, runAge: runAge, keepPerJob: keep, auditAge: auditAge,
                logger: makeLogger("agentjobs.run-retention"))
        }
    }

    /// The HTTP API and the console on `host:port`.
    static func controlPlane(
        store: any Store, _ settings: Settings, signingKey: DispatchSigningKey, host: String,
        port: Int, readinessChecks: [ReadinessCheck] = [], logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void
    ) throws -> some Service {
        var configuration = ControlPlaneConfiguration(
            hostOfflineGrace: try offlineGrace(settings), dispatchVerifier: signingKey.verifier)
        configuration.readinessChecks = readinessChecks
        MetricsExposition.addCollector { await OutboxMetrics.collect(from: store, logger: logger) }
        let api = ControlPlaneAPI(store: store, configuration: configuration)
        return ControlPlaneServer.service(
            api: api, host: host, port: port, logger: logger, onServerRunning: onServerRunning)
    }

    /// Folds run events into the store and publishes run records.
    static func aggregator<Consumer: MessageConsumer>(
        store: any Store, consumer: Consumer, producer: any MessageProducer
    ) -> StatusAggregator<Consumer> {
        StatusAggregator(
            store: store, consumer: consumer, producer: producer, logger: makeLogger("agentjobs.aggregator"))
    }

    /// Tracks host liveness from heartbeats; `trackerId` names this replica in its probes.
    static func hostTracker<Consumer: MessageConsumer>(
        store: any Store, consumer: Consumer, producer: any MessageProducer, _ settings: Settings,
        hostEventsPartitions: Int32, trackerId: String
    ) throws -> HostTracker<Consumer> {
        var configuration = HostTracker<Consumer>.Configuration()
        configuration.offlineGrace = try offlineGrace(settings)
        configuration.runsLostAfter = try settings.runsLostAfter(grace: configuration.offlineGrace)
        configuration.hostEventsPartitions = hostEventsPartitions
        configuration.trackerId = trackerId
        return HostTracker(
            store: store, consumer: consumer, producer: producer, configuration: configuration,
            logger: makeLogger("agentjobs.hosts"))
    }
}
