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

/// Deletes run history older than `age`: runs that ended before then (except the `keepPerJob`
/// newest runs of each job that still exists) and the scheduler's record of occurrences. Active runs
/// are never deleted. Every `interval` (the first at start-up) it deletes in batches, short write
/// transactions, so triggers and the aggregator do not wait behind one long delete. Several
/// replicas of `serve` may all run it: deleting is idempotent.
public struct RunRetention: Service {
    let store: any Store
    let age: Duration
    let keepPerJob: Int
    let interval: Duration
    let batchSize: Int
    let clock: @Sendable () -> Date
    let logger: Logger

    /// - Parameters:
    ///   - age: How long after its end a run is kept.
    ///   - keepPerJob: Runs of each existing job kept whatever their age (its newest).
    ///   - interval: Time between two prunings; the first runs at start-up.
    ///   - batchSize: Runs looked at per write transaction at most.
    public init(
        store: any Store, age: Duration, keepPerJob: Int, interval: Duration = .seconds(3600), batchSize: Int = 1000,
        clock: @escaping @Sendable () -> Date = { Date() }, logger: Logger
    ) {
        self.store = store
        self.age = age
        self.keepPerJob = max(0, keepPerJob)
        self.interval = interval
        self.batchSize = max(1, batchSize)
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        await repeatUntilShutdown(every: interval) {
            do {
                let (runs, occurrences) = try await prune()
                if runs + occurrences > 0 {
                    logger.info(
                        "pruned run history",
                        metadata: ["runs": "\(runs)", "schedule_occurrences": "\(occurrences)"])
                }
            } catch {
                logger.warning("could not prune run history", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Deletes every run and occurrence due, a batch at a time.
    /// - Returns: How many runs and occurrences were deleted.
    /// - Throws: Store errors as they are (what was deleted before stays deleted).
    public func prune() async throws -> (runs: Int, occurrences: Int) {
        let cutoff = clock().addingTimeInterval(-age.seconds)
        var runs = 0
        var cursor: RunRetentionCursor?
        repeat {
            guard !Task.isShuttingDownGracefully && !Task.isCancelled else { return (runs, 0) }
            let batch = try await store.deleteEndedRuns(
                before: cutoff, keepPerJob: keepPerJob, after: cursor, limit: batchSize)
            runs += batch.deleted
            cursor = batch.next
        } while cursor != nil
        var occurrences = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let deleted = try await store.deleteScheduleOccurrences(recordedBefore: cutoff, limit: batchSize)
            occurrences += deleted
            if deleted < batchSize { break }
        }
        return (runs, occurrences)
    }
}
