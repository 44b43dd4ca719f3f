import AgentJobsCore
import AgentJobsStore
import CoreMetrics
import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The outbox in metrics: rows published and failed by message type, the time from a row's write
/// (the trigger's transaction) to the transport's acknowledgement, and, when scraped, the unsent
/// backlog and its oldest row's age.
public enum OutboxMetrics {
    static func published(_ row: OutboxMessage, at acknowledgedAt: Date) {
        let type = label(row.type)
        Counter(label: "agentjobs_outbox_published_total", dimensions: [("type", type)]).increment()
        if row.type == RunDispatch.type {
            CoreMetrics.Timer(label: "agentjobs_run_dispatch_latency_seconds")
                .recordNanoseconds(Int64(max(0, acknowledgedAt.timeIntervalSince(row.createdAt)) * 1e9))
        }
    }

    static func publishFailed(_ row: OutboxMessage) {
        Counter(label: "agentjobs_outbox_publish_errors_total", dimensions: [("type", label(row.type))]).increment()
    }

    /// `dispatch` or `cancel` (the relay publishes no other type; anything else is `other`).
    private static func label(_ type: String) -> String {
        switch type {
        case RunDispatch.type: "dispatch"
        case RunCancel.type: "cancel"
        default: "other"
        }
    }

    /// Refreshes `agentjobs_outbox_unsent_messages` and `agentjobs_outbox_oldest_unsent_age_seconds`
    /// from `store` (a collector for ``MetricsExposition``); a store that fails leaves them as
    /// they were and logs why.
    public static func collect(from store: any Store, logger: Logger) async {
        do {
            let backlog = try await store.outboxBacklog()
            Gauge(label: "agentjobs_outbox_unsent_messages").record(backlog.unsent)
            Gauge(label: "agentjobs_outbox_oldest_unsent_age_seconds").record(
                backlog.oldestWrittenAt.map { max(0, Date().timeIntervalSince($0)) } ?? 0)
        } catch {
            logger.warning("could not read the outbox backlog for the metrics", metadata: ["error": "\(error)"])
        }
    }
}
