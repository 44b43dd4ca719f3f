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

/// Deletes outbox messages the relay sent longer than `age` ago, so the outbox does not grow with
/// every run. Unsent messages are kept whatever their age. Every `interval` it deletes in batches
/// (short write transactions, so triggers and the relay do not wait behind one long delete) until
/// none are due. Several replicas of `serve` may all run it: deleting is idempotent.
public struct OutboxRetention: Service {
    let store: any Store
    let age: Duration
    let interval: Duration
    let batchSize: Int
    let clock: @Sendable () -> Date
    let logger: Logger

    /// - Parameters:
    ///   - age: How long a sent message is kept.
    ///   - interval: Time between two prunings; the first runs at start-up.
    ///   - batchSize: Messages deleted per write transaction at most.
    public init(
        store: any Store, age: Duration, interval: Duration = .seconds(3600), batchSize: Int = 5000,
        clock: @escaping @Sendable () -> Date = { Date() }, logger: Logger
    ) {
        self.store = store
        self.age = age
        self.interval = interval
        self.batchSize = max(1, batchSize)
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        await repeatUntilShutdown(every: interval) {
            do {
                let deleted = try await prune()
                if deleted > 0 { logger.info("pruned sent outbox messages", metadata: ["messages": "\(deleted)"]) }
            } catch {
                logger.warning("could not prune the outbox", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Deletes every sent message older than `age`, a batch at a time.
    /// - Returns: How many were deleted.
    /// - Throws: Store errors as they are (what was deleted before stays deleted).
    public func prune() async throws -> Int {
        let cutoff = clock().addingTimeInterval(-age.seconds)
        return try await deleteInBatches(of: batchSize) {
            try await store.deleteSentOutbox(writtenBefore: cutoff, limit: batchSize)
        }
    }
}

/// Calls `delete` (which deletes at most `batchSize` rows) until it deletes fewer, or the service
/// is stopping: retention in short write transactions.
/// - Returns: How many rows were deleted.
func deleteInBatches(of batchSize: Int, _ delete: () async throws -> Int) async throws -> Int {
    var total = 0
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
        let deleted = try await delete()
        total += deleted
        if deleted < batchSize { break }
    }
    return total
}
