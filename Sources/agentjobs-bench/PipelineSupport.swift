import AgentJobsCore
import AgentJobsKafka
import AgentJobsOrchestrator
import AgentJobsStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

// Shared pieces of the pipeline phases (relay, aggregator, end-to-end, launch): the broker, loggers
// that timestamp the log lines the measured code writes after a durable step, services run in a
// ServiceGroup, a fixture of hosts, jobs and runs, and figures.

/// The Kafka-protocol broker of the Kafka phases: `AGENTJOBS_BENCH_KAFKA_BROKERS` (`host:port[,…]`).
struct KafkaTarget: Sendable {
    static let variable = "AGENTJOBS_BENCH_KAFKA_BROKERS"
    static let skipReason =
        "\(variable) is not set: Kafka phases skipped (make bench starts a throw-away Tansu and sets it)"

    var brokers: [String]

    static func fromEnvironment() -> KafkaTarget? {
        guard let value = ProcessInfo.processInfo.environment[variable]?.trimmingCharacters(in: .whitespaces),
            !value.isEmpty
        else { return nil }
        return KafkaTarget(brokers: value.split(separator: ",").map(String.init))
    }

    var description: String { brokers.joined(separator: ",") }

    /// Extra librdkafka properties for every consumer, from `AGENTJOBS_BENCH_KAFKA_CONSUMER_PROPERTIES`
    /// (`name=value,name=value`), to try consumer tuning (e.g. `fetch.wait.max.ms=10`).
    static let consumerProperties = properties("AGENTJOBS_BENCH_KAFKA_CONSUMER_PROPERTIES")
    /// Extra librdkafka properties for the e2e phase's host (dispatch) consumers only, on top of
    /// ``consumerProperties``: `AGENTJOBS_BENCH_KAFKA_HOST_CONSUMER_PROPERTIES`.
    static let hostConsumerProperties = properties("AGENTJOBS_BENCH_KAFKA_HOST_CONSUMER_PROPERTIES")
    /// Extra librdkafka properties for every producer: `AGENTJOBS_BENCH_KAFKA_PRODUCER_PROPERTIES`.
    static let producerProperties = properties("AGENTJOBS_BENCH_KAFKA_PRODUCER_PROPERTIES")

    /// The producers' `linger` (a managed setting, not a pass-through property), from
    /// `AGENTJOBS_BENCH_KAFKA_LINGER_MS`; `nil`: the product's default.
    static let producerLinger: Duration? = ProcessInfo.processInfo.environment["AGENTJOBS_BENCH_KAFKA_LINGER_MS"]
        .flatMap { Int($0) }.map { .milliseconds($0) }

    /// A producer configuration as the product makes it, with the benchmark's tuning knobs applied.
    func producer(_ id: String) -> KafkaProducerConfiguration {
        var configuration = KafkaProducerConfiguration(client: client(id))
        if let linger = Self.producerLinger { configuration.linger = linger }
        return configuration
    }

    private static func properties(_ variable: String) -> [String: String] {
        let text = ProcessInfo.processInfo.environment[variable] ?? ""
        var properties: [String: String] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { properties[parts[0]] = parts[1] }
        }
        return properties
    }

    /// Client settings; `extra` is added last (role-specific tuning).
    func client(_ id: String, consumer: Bool = false, extra: [String: String] = [:]) -> KafkaClientConfiguration {
        // A short session timeout so that a group consumer that left is noticed fast (as the tests do).
        let properties =
            consumer
            ? ["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"].merging(Self.consumerProperties) { $1 }
            : Self.producerProperties
        return KafkaClientConfiguration(
            bootstrapServers: brokers, clientID: "agentjobs-bench-\(id)",
            properties: properties.merging(extra) { $1 })
    }

    /// Creates topics (idempotent) and waits until the broker reports their partition counts.
    func createTopics(_ topics: [String: Int32], logger: Logger) async throws {
        let admin = try KafkaAdmin(configuration: client("admin"), logger: logger)
        do {
            try await admin.createTopics(
                topics.map { KafkaTopicSpecification(name: $0.key, partitionCount: $0.value) }, timeout: .seconds(30))
            for topic in topics.keys {
                var count: Int32?
                for _ in 0..<50 {
                    count = try await admin.partitionCount(ofTopic: topic)
                    if count != nil { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                guard count != nil else { throw BenchFailure("topic \(topic) did not appear on \(description)") }
            }
        } catch {
            await admin.shutdown()
            throw error
        }
        await admin.shutdown()
    }
}

/// Topic names unique to one benchmark run, so that a broker that outlives the run (or is shared)
/// never mixes runs: ``TopicRenamingProducer`` maps the product's fixed names onto them.
struct BenchTopics: Sendable {
    let suffix = UUID().uuidString.prefix(8).lowercased()
    func name(_ topic: String) -> String { "bench-\(suffix)-\(topic)" }
    var dispatch: String { name(Topic.dispatch) }
    var runEvents: String { name(Topic.runEvents) }
    /// The product's topics and the partition counts the benchmark gives them.
    static let product: [(topic: String, partitions: Int32)] = [
        (Topic.dispatch, 12), (Topic.runEvents, 12), (Topic.hostEvents, 6), (Topic.runStatus, 12),
        (Topic.deadLetter, 3),
    ]
    var all: [String: Int32] {
        Dictionary(uniqueKeysWithValues: Self.product.map { (name($0.topic), $0.partitions) })
    }
}

/// Forwards to a producer with each message's topic renamed (the product's topic names onto the
/// benchmark's); nothing else changes. The names are made once, so renaming costs no allocation.
struct TopicRenamingProducer: MessageProducer {
    let base: any MessageProducer
    private let names: [String: String]

    init(base: any MessageProducer, topics: BenchTopics) {
        self.base = base
        names = Dictionary(uniqueKeysWithValues: BenchTopics.product.map { ($0.topic, topics.name($0.topic)) })
    }

    private func renamed(_ message: OutgoingMessage) -> OutgoingMessage {
        var message = message
        message.topic = names[message.topic] ?? message.topic
        return message
    }

    func send(_ message: OutgoingMessage) async throws -> MessagePosition {
        try await base.send(renamed(message))
    }

    func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
        await base.sendBatch(messages.map(renamed))
    }

    func enqueueBatch(_ messages: [OutgoingMessage]) async -> PendingDelivery {
        await base.enqueueBatch(messages.map(renamed))
    }
}

/// A failure of the benchmark itself (set-up, lost work), reported as one line.
struct BenchFailure: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Records when the measured code logs certain lines (it logs them after the step they report is
/// durable), by run id. Lines at warning and above also go to stderr.
final class LogStamps: Sendable {
    struct Stamp: Sendable {
        var runId: String
        /// The `status` metadata (aggregator) or empty.
        var status: String
        var at: ContinuousClock.Instant
    }

    private struct State {
        var stamps: [String: [Stamp]] = [:]
        /// By message, and by message + "|" + status.
        var counts: [String: Int] = [:]
    }

    private let watched: Set<String>
    private let state = Mutex(State())

    /// - Parameter messages: The log messages to timestamp (e.g. "run status changed").
    init(watching messages: Set<String>) { watched = messages }

    func record(_ message: String, _ stamp: Stamp) {
        state.withLock { state in
            state.stamps[message, default: []].append(stamp)
            state.counts[message, default: 0] += 1
            state.counts[message + "|" + stamp.status, default: 0] += 1
        }
    }

    func isWatched(_ message: String) -> Bool { watched.contains(message) }

    func stamps(_ message: String) -> [Stamp] { state.withLock { $0.stamps[message] ?? [] } }

    /// How many `message` lines were logged (with `status`, when given).
    func count(_ message: String, status: String? = nil) -> Int {
        state.withLock { $0.counts[status.map { message + "|" + $0 } ?? message] ?? 0 }
    }

    /// The first stamp of each run id (and status) of `message`, keyed "runId|status".
    func firstByRun(_ message: String) -> [String: ContinuousClock.Instant] {
        var result: [String: ContinuousClock.Instant] = [:]
        for stamp in stamps(message) where result[stamp.runId + "|" + stamp.status] == nil {
            result[stamp.runId + "|" + stamp.status] = stamp.at
        }
        return result
    }

    func reset() { state.withLock { $0 = State() } }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { label in StampingLogHandler(label: label, stamps: self) }
        logger.logLevel = .info
        return logger
    }
}

/// Timestamps watched lines (info and up), prints warnings and errors to stderr, drops the rest
/// (formatting every info line would add the cost of the benchmark's own logging to the figures).
struct StampingLogHandler: LogHandler {
    let label: String
    let stamps: LogStamps?
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let message = event.message.description
        if let stamps, stamps.isWatched(message) {
            let now = ContinuousClock.now
            let runId = event.metadata?["run_id"].map { "\($0)" } ?? ""
            let status = event.metadata?["status"].map { "\($0)" } ?? ""
            stamps.record(message, .init(runId: runId, status: status, at: now))
        }
        if event.level >= .warning {
            let details = (metadata.merging(event.metadata ?? [:]) { $1 }).sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            FileHandle.standardError.write(
                Data("agentjobs-bench: [\(label)] \(event.level): \(message) \(details)\n".utf8))
        }
    }
}

/// A logger that shows warnings and errors only.
func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label) { label in StampingLogHandler(label: label, stamps: nil) }
    logger.logLevel = .warning
    return logger
}

/// Services running in a `ServiceGroup` (started in order, shut down gracefully in reverse) in a
/// background task.
struct RunningServices: Sendable {
    let group: ServiceGroup
    let task: Task<Void, any Error>

    static func start(_ services: [any Service], logger: Logger) -> RunningServices {
        let group = ServiceGroup(configuration: .init(services: services, logger: logger))
        return RunningServices(group: group, task: Task { try await group.run() })
    }

    /// Shuts down gracefully and waits; throws what a service threw.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// Waits until `condition` holds, checking every `interval`.
/// - Throws: ``BenchFailure`` naming `what` after `timeout`.
func waitUntil(
    _ what: String, timeout: Duration, interval: Duration = .milliseconds(2), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            throw BenchFailure("timed out after \(timeout) waiting for \(what)")
        }
        try await Task.sleep(for: interval)
    }
}

/// A count over a time span, with the CPU the benchmark process (and everything else) used.
struct RateFigure: Codable, Sendable {
    var count: Int
    var seconds: Double
    var perSecond: Double
    /// CPU-seconds of the benchmark process during the span.
    var benchCPUSeconds: Double
    /// CPU-seconds of every other process (the broker, when one runs on this machine).
    var otherCPUSeconds: Double

    init(count: Int, seconds: Double, cpu: CPUUsage) {
        self.count = count
        self.seconds = seconds
        perSecond = seconds > 0 ? Double(count) / seconds : 0
        benchCPUSeconds = cpu.loadGeneratorSeconds
        otherCPUSeconds = cpu.otherSeconds
    }

    /// "12,345/s (50,000 in 4.05 s; CPU: bench 3.1 s = 62 µs each, others 1.2 s)"
    func text(_ unit: String) -> String {
        let micros = count > 0 ? benchCPUSeconds * 1e6 / Double(count) : 0
        return "\(formatRate(perSecond)) \(unit)/s   (\(formatCount(count)) in \(formatFixed(seconds, 2)) s;"
            + " CPU bench \(formatFixed(benchCPUSeconds, 1)) s = \(formatFixed(micros, 0)) µs each,"
            + " other processes \(formatFixed(otherCPUSeconds, 1)) s)"
    }
}

/// Measures `body`'s wall time and the CPU used meanwhile.
func measured<T>(_ body: () async throws -> T) async rethrows -> (T, seconds: Double, cpu: CPUUsage) {
    let pid = getpid()
    let before = CPUSample.take(pids: [pid])
    let start = ContinuousClock.now
    let value = try await body()
    let seconds = (ContinuousClock.now - start).seconds
    let after = CPUSample.take(pids: [pid])
    return (value, seconds, CPUUsage(from: before, to: after, wallSeconds: seconds, serverPid: nil, benchPid: pid))
}

/// Latency percentiles in milliseconds (nearest rank).
struct LatencyFigure: Codable, Sendable {
    var count: Int
    var p50: Double
    var p90: Double
    var p99: Double
    var max: Double

    init(milliseconds values: [Double]) {
        let sorted = values.sorted()
        func rank(_ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = Int((fraction * Double(sorted.count)).rounded(.up))
            return sorted[Swift.min(Swift.max(index, 1), sorted.count) - 1]
        }
        count = sorted.count
        p50 = rank(0.5)
        p90 = rank(0.9)
        p99 = rank(0.99)
        max = sorted.last ?? 0
    }

    var text: String {
        "p50 \(formatFixed(p50, 1))   p90 \(formatFixed(p90, 1))   p99 \(formatFixed(p99, 1))   max \(formatFixed(max, 1)) ms"
            + "   (\(formatCount(count)) samples)"
    }
}

extension Duration {
    var milliseconds: Double { seconds * 1000 }
}

/// Hosts, jobs and (optionally) queued runs created through the store, in a database that phases
/// copy so that each starts from the same state.
struct PipelineFixture: Sendable {
    struct HostInfo: Sendable {
        var id: String
        var credential: Secret
        var eventKey: HostEventKey { HostEventKey(credential: credential.value) }
    }

    struct RunInfo: Sendable {
        var id: String
        var jobId: String
        var hostId: String
        var dispatchEpoch: Int
    }

    var databasePath: String
    var hosts: [HostInfo]
    var jobIds: [String]
    /// The runs triggered, in trigger order (one per job when `trigger` was set).
    var runs: [RunInfo]
    var setupSeconds: Double

    /// Creates `hostCount` hosts managing `datahealth`, `jobCount` jobs spread over them in turn,
    /// and, when `trigger` is set, one run of each job (each adds an outbox row).
    static func prepare(directory: URL, hostCount: Int, jobCount: Int, trigger: Bool) async throws -> PipelineFixture {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("agentjobs.sqlite").path
        let store = try SQLiteStore(path: path)
        let start = ContinuousClock.now
        do {
            let now = Date()
            var hosts: [HostInfo] = []
            for index in 0..<hostCount {
                let (_, registration) = try await store.createRegistrationToken(
                    expiresAt: now.addingTimeInterval(600), now: now)
                let credential = Secret.generate(prefix: "ajh")
                let host = try await store.registerHost(
                    registrationTokenHash: registration.hash, name: "bench-host-\(index)", managedAgents: [.datahealth],
                    credential: credential, now: now)
                hosts.append(HostInfo(id: host.id, credential: credential))
            }
            let hostIds = hosts.map(\.id)
            let jobIds = try await concurrentMap(0..<jobCount, concurrency: 256) { index in
                try await store.createJob(
                    JobDefinition(
                        name: "pipeline-\(index)", hostId: hostIds[index % hostIds.count], agentType: .datahealth,
                        parameters: .file(fileName: "bench-\(index).csv")),
                    now: Date()
                ).id
            }
            var runs: [RunInfo] = []
            if trigger {
                runs = try await concurrentMap(jobIds.indices, concurrency: 64) { index in
                    let run = try await store.triggerRun(
                        jobId: jobIds[index], trigger: .api, scheduledAt: nil, now: Date())
                    return RunInfo(id: run.id, jobId: run.jobId, hostId: run.hostId, dispatchEpoch: run.dispatchEpoch)
                }
            }
            await store.close()
            return PipelineFixture(
                databasePath: path, hosts: hosts, jobIds: jobIds, runs: runs,
                setupSeconds: (ContinuousClock.now - start).seconds)
        } catch {
            await store.close()
            throw error
        }
    }

    /// Copies the (closed) database into `directory` and returns the copy's path.
    func copy(to directory: URL) throws -> String {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let target = directory.appendingPathComponent("agentjobs.sqlite").path
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: databasePath + suffix) {
            try? FileManager.default.removeItem(atPath: target + suffix)
            try FileManager.default.copyItem(atPath: databasePath + suffix, toPath: target + suffix)
        }
        return target
    }
}

/// `body` applied to every element with at most `concurrency` calls in flight; results in order.
func concurrentMap<Element: Sendable, T: Sendable>(
    _ elements: some Collection<Element>, concurrency: Int, _ body: @escaping @Sendable (Element) async throws -> T
) async throws -> [T] {
    let elements = Array(elements)
    return try await withThrowingTaskGroup(of: (Int, T).self) { group in
        var results = [T?](repeating: nil, count: elements.count)
        var next = 0
        func add() {
            let index = next
            next += 1
            group.addTask { (index, try await body(elements[index])) }
        }
        while next < min(concurrency, elements.count) { add() }
        while let (index, value) = try await group.next() {
            results[index] = value
            if next < elements.count { add() }
        }
        return results.map { $0! }
    }
}

func formatFixed(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
func formatPercent(_ fraction: Double) -> String { String(format: "%.0f%%", fraction * 100) }
func formatRate(_ value: Double) -> String { formatCount(Int(value.rounded())) }

/// `12345` as `12,345`.
func formatCount(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var result = ""
    for (offset, digit) in digits.enumerated() {
        if offset > 0, (digits.count - offset) % 3 == 0 { result.append(",") }
        result.append(digit)
    }
    return (value < 0 ? "-" : "") + result
}

/// A labelled line of a report section.
func reportLine(_ label: String, _ value: String) -> String {
    "  " + label.padding(toLength: 50, withPad: " ", startingAt: 0) + value
}

/// The no-op agent of the launch and end-to-end phases, run by the real process driver.
enum NoOpAgent {
    /// A catalog whose datahealth command is the no-op script.
    static func catalog(_ path: String) -> AgentCatalog {
        var catalog = AgentCatalog.sampleAgents(scriptsDirectory: "/nonexistent")
        catalog.datahealth.command = [path]
        return catalog
    }

    static func driver(_ runsDirectory: URL) -> ProcessDriver {
        ProcessDriver(
            configuration: ProcessDriverConfiguration(
                stateDirectory: runsDirectory.deletingLastPathComponent().appendingPathComponent("process-driver").path),
            logger: quietLogger("bench.driver"))
    }

    static func launch(_ catalog: AgentCatalog, _ dispatch: RunDispatch, _ runDirectory: URL) throws -> AgentLaunch {
        try catalog.launch(
            runId: dispatch.runId, jobId: dispatch.jobId, hostId: dispatch.hostId,
            dispatchEpoch: dispatch.dispatchEpoch,
            agentType: dispatch.agentType, parameters: dispatch.parameters, logDirectory: runDirectory.path,
            driver: .process)
    }
}
