import AgentJobsCore
import CoreMetrics

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The run lifecycle in metrics, recorded where each change is made: runs created by trigger
/// (control plane, scheduler), runs ended by status and agent type with their trigger → started
/// and trigger → ended latencies (aggregator, host tracking, a cancel that withdrew a dispatch).
///
/// Latencies are measured on the control plane's clocks: from the run's `queuedAt` to when the
/// change was applied, not to the host's event times, so a host's skew does not bend them.
public enum RunMetrics {
    public static func created(_ trigger: RunTrigger) {
        Counter(label: "agentjobs_runs_created_total", dimensions: [("trigger", trigger.rawValue)]).increment()
    }

    /// A retry's delay passed and its dispatch was written.
    public static func retryDispatched(_ run: Run) {
        Counter(label: "agentjobs_run_retries_total", dimensions: [("agent_type", run.agentType.rawValue)]).increment()
    }

    /// A run's start was applied at `appliedAt`.
    public static func started(_ run: Run, appliedAt: Date) {
        Timer(label: "agentjobs_run_start_latency_seconds", dimensions: [("agent_type", run.agentType.rawValue)])
            .record(seconds: appliedAt.timeIntervalSince(run.queuedAt))
    }

    /// A run's end (`run.status` is terminal) was applied at `appliedAt`.
    public static func ended(_ run: Run, appliedAt: Date) {
        let dimensions = [("status", run.status.rawValue), ("agent_type", run.agentType.rawValue)]
        Counter(label: "agentjobs_runs_ended_total", dimensions: dimensions).increment()
        Timer(label: "agentjobs_run_end_latency_seconds", dimensions: dimensions)
            .record(seconds: appliedAt.timeIntervalSince(run.queuedAt))
    }
}

extension Timer {
    /// Records a duration in seconds; a negative one (clocks of two replicas apart) as zero.
    public func record(seconds: Double) {
        recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }

    /// Records a monotonic-clock duration.
    public func record(_ duration: Duration) {
        let parts = duration.components
        recordNanoseconds(max(0, parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000))
    }
}
