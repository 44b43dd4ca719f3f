import Synchronization

/// What one operation of a load run ended with.
enum Outcome: Sendable {
    case success
    /// `kind` groups failures in the report ("HTTP 409"); `detail` is kept for the first of a kind.
    case failure(kind: String, detail: String)
}

/// The raw result of a load run: every latency, and failures by kind.
struct LoadRun: Sendable {
    var operations: Int
    var elapsed: Duration
    var latencyNanoseconds: [Int64]
    var failures: [String: Int]
    var failureDetails: [String: String]

    var operationsPerSecond: Double { Double(operations) / elapsed.seconds }
    var failureCount: Int { failures.values.reduce(0, +) }
}

/// Runs `operation` once per item with `concurrency` workers pulling from a shared cursor, timing
/// each call with the continuous clock.
func runLoad(
    items: ArraySlice<String>, concurrency: Int, operation: @escaping @Sendable (String) async -> Outcome
) async -> LoadRun {
    final class Cursor: Sendable { let next = Atomic<Int>(0) }
    struct WorkerResult: Sendable {
        var latencies: [Int64] = []
        var failures: [String: Int] = [:]
        var details: [String: String] = [:]
    }
    let items = Array(items)
    let cursor = Cursor()
    let clock = ContinuousClock()
    let start = clock.now
    let results = await withTaskGroup(of: WorkerResult.self) { group in
        for _ in 0..<min(concurrency, max(items.count, 1)) {
            group.addTask {
                var result = WorkerResult()
                result.latencies.reserveCapacity(items.count / concurrency + 1)
                while true {
                    let index = cursor.next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard index < items.count else { break }
                    let begin = clock.now
                    let outcome = await operation(items[index])
                    result.latencies.append(begin.duration(to: clock.now).nanoseconds)
                    if case .failure(let kind, let detail) = outcome {
                        result.failures[kind, default: 0] += 1
                        if result.details[kind] == nil { result.details[kind] = detail }
                    }
                }
                return result
            }
        }
        var results: [WorkerResult] = []
        for await result in group { results.append(result) }
        return results
    }
    let elapsed = start.duration(to: clock.now)
    var run = LoadRun(
        operations: items.count, elapsed: elapsed, latencyNanoseconds: [], failures: [:], failureDetails: [:])
    for result in results {
        run.latencyNanoseconds.append(contentsOf: result.latencies)
        run.failures.merge(result.failures, uniquingKeysWith: +)
        run.failureDetails.merge(result.details) { first, _ in first }
    }
    return run
}

/// Throughput and latency percentiles of a load run, as reported.
struct ThroughputFigure: Codable, Sendable {
    var operations: Int
    var concurrency: Int
    var seconds: Double
    var perSecond: Double
    var latencyMilliseconds: Percentiles
    var failures: [String: Int]
    var failureExamples: [String: String]

    struct Percentiles: Codable, Sendable {
        var p50: Double
        var p90: Double
        var p99: Double
        var max: Double
    }

    init(_ run: LoadRun, concurrency: Int) {
        let sorted = run.latencyNanoseconds.sorted()
        func percentile(_ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            // Nearest rank: the smallest latency that at least `fraction` of the calls did not exceed.
            let rank = Int((fraction * Double(sorted.count)).rounded(.up))
            return Double(sorted[min(max(rank, 1), sorted.count) - 1]) / 1e6
        }
        operations = run.operations
        self.concurrency = concurrency
        seconds = run.elapsed.seconds
        perSecond = run.operationsPerSecond
        latencyMilliseconds = Percentiles(
            p50: percentile(0.5), p90: percentile(0.9), p99: percentile(0.99), max: percentile(1))
        failures = run.failures
        failureExamples = run.failureDetails
    }
}
