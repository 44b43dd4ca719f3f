import AgentJobsCore
import AgentJobsLifecycle
import AgentJobsStore
import Logging
import ServiceLifecycle

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Deletes history older than its retention: runs that ended more than `runAge` ago (except the
/// `keepPerJob` newest runs of each job that still exists) with the scheduler's record of
/// occurrences as old, and audit entries older than `auditAge`. Active runs are never deleted.
/// Every `interval` (the first at start-up) it deletes in batches, short write transactions, so
/// triggers and the aggregator do not wait behind one long delete. Several replicas of `serve` may
/// all run it: deleting is idempotent.
public struct RunRetention: Service {
    /// How much one pass deleted.
    public struct Pruned: Sendable, Hashable {
        public var runs = 0
        public var occurrences = 0
        public var auditEntries = 0
        public var webhookDeliveries = 0

        public init(runs: Int = 0, occurrences: Int = 0, auditEntries: Int = 0) {
            self.runs = runs
            self.occurrences = occurrences
            self.auditEntries = auditEntries
        }
    }

    let store: any Store
    let runAge: Duration?
    let keepPerJob: Int
    let auditAge: Duration?
    let interval: Duration
    let batchSize: Int
    let clock: @Sendable () -> Date
    let logger: Logger

    /// - Parameters:
    ///   - runAge: How long after its end a run is kept; nil keeps runs and occurrences.
    ///   - keepPerJob: Runs of each existing job kept whatever their age (its newest).
    ///   - auditAge: How long an audit entry is kept; nil keeps them.
    ///   - interval: Time between two prunings; the first runs at start-up.
    ///   - batchSize: Rows looked at per write transaction at most.
    public init(
        store: any Store, runAge: Duration?, keepPerJob: Int, auditAge: Duration?, interval: Duration = .seconds(3600),
        batchSize: Int = 1000, clock: @escaping @Sendable () -> Date = { Date() }, logger: Logger
    ) {
        self.store = store
        self.runAge = runAge
        self.keepPerJob = max(0, keepPerJob)
        self.auditAge = auditAge
        self.interval = interval
        self.batchSize = max(1, batchSize)
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        await repeatUntilShutdown(every: interval) {
            do {
                let pruned = try await prune()
                if pruned != Pruned() {
                    logger.info(
                        "pruned old history",
                        metadata: [
                            "runs": "\(pruned.runs)", "schedule_occurrences": "\(pruned.occurrences)",
                            "audit_entries": "\(pruned.auditEntries)",
                            "webhook_deliveries": "\(pruned.webhookDeliveries)",
                        ])
                }
            } catch {
                logger.warning("could not prune old history", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Deletes every run, occurrence and audit entry due, a batch at a time.
    /// - Returns: How many were deleted.
    /// - Throws: Store errors as they are (what was deleted before stays deleted).
    public func prune() async throws -> Pruned {
        var pruned = Pruned()
        let now = clock()
        if let runAge {
            let cutoff = now.addingTimeInterval(-runAge.seconds)
            var cursor: RunRetentionCursor?
            repeat {
                guard !Task.isShuttingDownGracefully && !Task.isCancelled else { return pruned }
                let batch = try await store.deleteEndedRuns(
                    before: cutoff, keepPerJob: keepPerJob, after: cursor, limit: batchSize)
                pruned.runs += batch.deleted
                cursor = batch.next
            } while cursor != nil
            pruned.occurrences = try await deleteInBatches(of: batchSize) {
                try await store.deleteScheduleOccurrences(recordedBefore: cutoff, limit: batchSize)
            }
            // Delivered and given-up webhook deliveries go with the runs they tell of.
            pruned.webhookDeliveries = try await deleteInBatches(of: batchSize) {
                try await store.deleteWebhookDeliveries(before: cutoff, limit: batchSize)
            }
        }
        if let auditAge {
            let cutoff = now.addingTimeInterval(-auditAge.seconds)
            pruned.auditEntries = try await deleteInBatches(of: batchSize) {
                try await store.deleteAuditEntries(before: cutoff, limit: batchSize)
            }
        }
        return pruned
    }
}
