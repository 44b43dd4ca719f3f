import AgentJobsCore
import AgentJobsStore
import AgentJobsTelemetry
import Logging
import ServiceLifecycle
import Tracing

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Fires jobs' cron schedules through the same trigger path as "Run now", and dispatches retries
/// whose delay has passed.
///
/// Every pass reads the schedules due now, plans each with ``SchedulePlanner`` (on-time, missed,
/// catch-up) and records the outcome with ``Store/recordOccurrences(jobId:expectedCursor:decisions:newState:now:)``,
/// which acts only if the schedule has not moved since it was read: several control-plane replicas
/// can run a scheduler on one database and each occurrence still fires exactly once.
public struct Scheduler: Service {
    /// Settings of the scheduler.
    public struct Configuration: Sendable {
        /// Time between passes; passes are aligned to this grid so minute-boundary crons fire promptly.
        public var interval: Duration = .milliseconds(500)
        /// Due schedules read per query.
        public var batchSize = 1000
        /// Schedules handled concurrently (their writes share group commits).
        public var concurrency = 64
        public init() {}
    }

    let store: any Store
    let configuration: Configuration
    let clock: @Sendable () -> Date
    let logger: Logger

    public init(
        store: any Store, configuration: Configuration = .init(), clock: @escaping @Sendable () -> Date = { Date() },
        logger: Logger
    ) {
        self.store = store
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        logger.info("scheduler started")
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // A pass waiting on a database that is down must not hold up a stop: both passes are
            // abandoned at a graceful shutdown (an occurrence or a release is recorded once, in one
            // transaction, so the next start finds it done or does it).
            do {
                let recorded = try await cancelWhenGracefulShutdown { try await tick(now: clock()) }
                if !recorded.isEmpty { logger.debug("schedule pass", metadata: ["occurrences": "\(recorded.count)"]) }
            } catch  where Task.isShuttingDownGracefully || Task.isCancelled {
                break
            } catch {
                logger.error("schedule pass failed; retrying", metadata: ["error": "\(error)"])
            }
            do {
                _ = try await cancelWhenGracefulShutdown { try await releaseRetries(now: clock()) }
            } catch  where Task.isShuttingDownGracefully || Task.isCancelled {
                break
            } catch {
                logger.error("retry pass failed; retrying", metadata: ["error": "\(error)"])
            }
            let interval = configuration.interval.seconds
            let now = clock().timeIntervalSince1970
            let wait = interval - now.truncatingRemainder(dividingBy: interval)
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int(wait * 1000) + 5)) }
            } catch {
                break
            }
        }
        logger.info("scheduler stopped")
    }

    /// One pass at `now`: handles every schedule due by then.
    /// - Returns: The occurrences recorded in this pass.
    /// - Throws: A store error that stopped the pass (the next pass retries).
    @discardableResult
    public func tick(now: Date) async throws -> [ScheduleOccurrence] {
        var recorded: [ScheduleOccurrence] = []
        // Bounded: a schedule whose write keeps failing cannot keep one pass going forever.
        for _ in 0..<1000 {
            let due = try await store.dueSchedules(now: now, limit: configuration.batchSize)
            if due.isEmpty { break }
            recorded += try await fire(due, now: now)
            if due.count < configuration.batchSize { break }
        }
        return recorded
    }

    /// Writes the dispatch of every retry due by `now` (``Store/releaseHeldRuns(now:limit:)``).
    /// - Returns: The runs dispatched.
    @discardableResult
    public func releaseRetries(now: Date) async throws -> [Run] {
        var released: [Run] = []
        // Bounded like a schedule pass.
        for _ in 0..<1000 {
            let batch = try await store.releaseHeldRuns(now: now, limit: configuration.batchSize)
            for run in batch {
                RunMetrics.retryDispatched(run)
                logger.info(
                    "retry dispatched",
                    metadata: [
                        "run_id": "\(run.id)", "job_id": "\(run.jobId)", "attempt": "\(run.attempt)",
                        "retry_of": "\(run.retryOf ?? "")",
                    ])
            }
            released += batch
            if batch.count < configuration.batchSize { break }
        }
        return released
    }

    private func fire(_ due: [DueSchedule], now: Date) async throws -> [ScheduleOccurrence] {
        try await withThrowingTaskGroup(of: [ScheduleOccurrence].self) { group in
            var results: [ScheduleOccurrence] = []
            var iterator = due.makeIterator()
            func addNext() -> Bool {
                guard let item = iterator.next() else { return false }
                group.addTask { try await fire(item, now: now) }
                return true
            }
            for _ in 0..<configuration.concurrency where !addNext() { break }
            while let occurrences = try await group.next() {
                results += occurrences
                _ = addNext()
            }
            return results
        }
    }

    private func fire(_ due: DueSchedule, now: Date) async throws -> [ScheduleOccurrence] {
        guard let schedule = due.job.schedule else { return [] }
        let plan = SchedulePlanner.plan(schedule: schedule, jobId: due.job.id, state: due.state, now: now)
        // The runs of this tick start a trace (when tracing is on) that their dispatches carry.
        let occurrences = try await withSpan("agentjobs.schedule_tick", ofKind: .internal) { span in
            span.attributes["agentjobs.job_id"] = due.job.id
            return try await store.recordOccurrences(
                jobId: due.job.id, expectedCursor: due.state.cursor, decisions: plan.decisions, newState: plan.state,
                now: now, traceParent: RunTracing.currentTraceParent())
        }
        for occurrence in occurrences {
            var metadata: Logger.Metadata = [
                "job_id": "\(occurrence.jobId)", "scheduled_at": "\(ISO8601.format(occurrence.scheduledAt))",
                "outcome": "\(occurrence.outcome.rawValue)",
            ]
            if let runId = occurrence.runId {
                metadata["run_id"] = "\(runId)"
                RunMetrics.created(.schedule)
            }
            if let active = occurrence.activeRunId { metadata["active_run_id"] = "\(active)" }
            logger.info("schedule occurrence", metadata: metadata)
        }
        return occurrences
    }
}
