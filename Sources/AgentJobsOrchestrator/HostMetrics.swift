import AgentJobsTelemetry
import CoreMetrics

/// The orchestrator in metrics (`agentjobs_host_…`): agents running, launches and how long the
/// driver took, how long confirmed stops took, journal writes, heartbeats sent, dispatch messages
/// refused. Each orchestrator process is one host, so no metric carries a host label: the scrape
/// target names the host.
enum HostMetrics {
    static var agentsRunning: Gauge { Gauge(label: "agentjobs_host_agents_running") }
    /// Runs accepted and waiting for a slot under the host's concurrency limit.
    static var runsWaiting: Gauge { Gauge(label: "agentjobs_host_runs_waiting") }
    static var journalWrite: Timer { Timer(label: "agentjobs_host_journal_write_seconds") }
    static var stopTime: Timer { Timer(label: "agentjobs_host_stop_seconds") }

    static func launched(after duration: Duration) {
        Counter(label: "agentjobs_host_launches_total", dimensions: [("result", "started")]).increment()
        Timer(label: "agentjobs_host_launch_seconds").record(duration)
    }

    /// An agent a failed attempt started all the same, found and adopted by the next one.
    static func adopted() {
        Counter(label: "agentjobs_host_launches_total", dimensions: [("result", "adopted")]).increment()
    }

    static func launchFailed() {
        Counter(label: "agentjobs_host_launches_total", dimensions: [("result", "failed")]).increment()
    }

    static func heartbeats(_ result: String) -> Counter {
        Counter(label: "agentjobs_host_heartbeats_total", dimensions: [("result", result)])
    }
}
