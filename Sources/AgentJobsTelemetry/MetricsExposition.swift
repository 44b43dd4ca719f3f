import CoreMetrics
import Prometheus
import Synchronization

/// The process's Prometheus metrics: every module records through swift-metrics (`Counter`,
/// `Timer`, `Gauge`, `Recorder`), and ``bootstrap()`` routes those to one Prometheus registry that
/// ``render()`` writes in the text exposition format for `GET /metrics`.
///
/// Some figures are read when scraped rather than kept up to date (the outbox backlog, consumer
/// lag): a role registers a collector for them (``addCollector(_:)``), run before each render with
/// a time limit, so a database that does not answer delays a scrape by at most
/// ``collectorTimeout`` and leaves the previous values in place.
public enum MetricsExposition {
    /// How long a scrape waits for the collectors.
    public static let collectorTimeout: Duration = .seconds(2)

    private static let registry = PrometheusCollectorRegistry()
    private static let collectors = Mutex<[@Sendable () async -> Void]>([])
    /// Whether the collectors of an earlier scrape are still running (one left behind by the
    /// timeout): a scrape meanwhile renders the previous values instead of starting more of them.
    private static let collecting = Mutex(false)
    private static let bootstrapped = Mutex(false)

    /// Routes swift-metrics to the Prometheus registry, with histogram buckets sized for what
    /// AgentJobs measures (``Buckets``). Idempotent: only the first call in a process bootstraps.
    public static func bootstrap() {
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Buckets.latency
        factory.durationHistogramBuckets = Buckets.durationsByName
        factory.valueHistogramBuckets = Buckets.valuesByName
        MetricsSystem.bootstrap(factory)
    }

    /// Adds a collector that refreshes scrape-time gauges; it must return promptly and never throw
    /// (a failure leaves its gauges as they were and is the collector's to log).
    public static func addCollector(_ collector: @escaping @Sendable () async -> Void) {
        collectors.withLock { $0.append(collector) }
    }

    /// The metrics in the Prometheus text format (version 0.0.4), after running the collectors.
    public static func render() async -> [UInt8] {
        let pending = collectors.withLock { $0 }
        let start =
            !pending.isEmpty
            && collecting.withLock { running in
                defer { running = true }
                return !running
            }
        if start {
            // Unstructured, so that a collector that hangs is left behind (its store call ends with
            // its own timeout) instead of holding the scrape: the first of "all done" and the
            // timeout resumes.
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let waiting = Mutex<CheckedContinuation<Void, Never>?>(continuation)
                let resume = { @Sendable in waiting.withLock { $0.take() }?.resume() }
                let timer = Task {
                    try? await Task.sleep(for: collectorTimeout)
                    resume()
                }
                Task {
                    await withTaskGroup(of: Void.self) { group in
                        for collector in pending { group.addTask { await collector() } }
                    }
                    collecting.withLock { $0 = false }
                    timer.cancel()
                    resume()
                }
            }
        }
        return registry.emitToBuffer()
    }

    /// The content type of ``render()``'s output.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// Histogram buckets: latencies from 5 ms to 5 min; store and file writes from 0.5 ms; batch
/// sizes up to the aggregator's largest batch.
public enum Buckets {
    public static let latency: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60), .seconds(300),
    ]
    public static let fastWrite: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
    ]
    public static let batchSize: [Double] = [1, 5, 10, 50, 100, 250, 500, 1000, 2000]

    static let durationsByName: [String: [Duration]] = [
        "agentjobs_aggregator_apply_seconds": fastWrite,
        "agentjobs_host_journal_write_seconds": fastWrite,
        "agentjobs_http_request_duration_seconds": fastWrite + [.milliseconds(2500), .seconds(10)],
    ]
    static let valuesByName: [String: [Double]] = [
        "agentjobs_aggregator_batch_events": batchSize
    ]
}
