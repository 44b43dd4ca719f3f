import AgentJobsAggregator
import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsStore
import Foundation
import ServiceLifecycle
import Synchronization

/// Issue 18's fleet: N registered hosts heartbeating every 5 s (each heartbeat signed with the
/// host's own credential) into the embedded log, read by one real host tracker (default settings:
/// 30 s grace, probes and sweeps every 2 s) on the embedded log's SQLite store, in this process.
///
/// Per fleet size it prints: registration rate; heartbeats offered and applied per second and the
/// store transactions they took; the tracker's CPU (the process's CPU minus the generator's,
/// measured alone in the same run); lost-host detection when 1% of the hosts stop (seconds from
/// each one's last heartbeat until the API would show it offline, and hosts shown offline that
/// never stopped); the store work of listing a page of hosts as `GET /api/v1/hosts` does.
///
/// What it does not cover: real orchestrators (the virtual hosts only publish heartbeats), the
/// HTTP registration endpoint (hosts are registered through the store), and a Kafka broker.
enum FleetBenchmark {
    static let interval = Duration.seconds(5)
    static let grace = Duration.seconds(30)
    static let partitions: Int32 = 4
    /// The goal: a stopped host is shown offline within the grace plus this.
    static let detectionSlack = Duration.seconds(5)

    struct Size: Codable, Sendable {
        var hosts: Int
        var registrationPerSecond: Double
        var measuredSeconds: Double
        var heartbeatsOfferedPerSecond: Double
        var heartbeatsAppliedPerSecond: Double
        var heartbeatTransactionsPerSecond: Double
        /// Heartbeats offered but not applied at the end of the window.
        var backlogAtEnd: Int
        var generatorCoreShare: Double
        var trackerCoreShare: Double
        var trackerMicrosecondsPerHeartbeat: Double
        var silentHostQueryP99Milliseconds: Double
        var listHostsP50Milliseconds: Double
        var listHostsP99Milliseconds: Double
        var stopped: Int
        var detected: Int
        var detectionP50Seconds: Double
        var detectionMaxSeconds: Double
        var falselyOffline: Int
        var goalMet: Bool
    }

    struct Figures: Codable, Sendable {
        var intervalSeconds: Double
        var graceSeconds: Double
        var partitions: Int32
        var sizes: [Size]
        var failures: [String]
    }

    static func run(directory: URL, hostCounts: [Int], seconds: Int, progress: (String) -> Void) async throws
        -> Figures
    {
        var figures = Figures(
            intervalSeconds: interval.seconds, graceSeconds: grace.seconds, partitions: partitions, sizes: [],
            failures: [])
        for count in hostCounts {
            let size = try await measure(
                hosts: count, seconds: seconds, directory: directory.appendingPathComponent("fleet-\(count)"),
                progress: progress)
            if size.falselyOffline > 0 {
                figures.failures.append("\(count) hosts: \(size.falselyOffline) heartbeating hosts shown offline")
            }
            if size.detected < size.stopped {
                figures.failures.append("\(count) hosts: \(size.stopped - size.detected) stopped hosts never offline")
            }
            figures.sizes.append(size)
        }
        return figures
    }

    private static func measure(hosts count: Int, seconds: Int, directory: URL, progress: (String) -> Void)
        async throws -> Size
    {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let base = try SQLiteStore(path: directory.appendingPathComponent("fleet.sqlite").path)
        let store = CountingStore(base)
        let log = SQLiteMessageLog(sharing: base.database)
        let partitionCount = try await log.createTopic(Topic.hostEvents, partitionCount: partitions)
        let producer = SQLiteMessageProducer(log: log)

        progress("fleet: registering \(count) hosts")
        let registrationStart = ContinuousClock.now
        let fleet = VirtualFleet(hosts: try await register(count, in: base))
        let registrationSeconds = (ContinuousClock.now - registrationStart).seconds

        let generator = Task { await fleet.beat(into: producer) }
        let tracker = startTracker(store: store, log: log, producer: producer, partitions: partitionCount)
        progress("fleet: \(count) hosts heartbeating; waiting until the tracker has seen each and caught up")
        let warmup = ContinuousClock.now
        while ContinuousClock.now - warmup < .seconds(180) {
            let silent = try await base.hostsNotHeard(since: Date().addingTimeInterval(-interval.seconds - 2)).count
            let behind = fleet.offered.load(ordering: .relaxed) - store.tally.withLock { $0.heartbeats }
            if silent == 0, Double(behind) < Double(count) / interval.seconds { break }
            try await Task.sleep(for: .seconds(1))
        }

        // The steady window: throughput, CPU, listing latency, and no host falsely offline.
        progress("fleet: \(count) hosts, measuring for \(seconds) s")
        let pid = ProcessInfo.processInfo.processIdentifier
        let cpuStart = CPUSample.take(pids: [pid])
        let windowStart = ContinuousClock.now
        let offeredStart = fleet.offered.load(ordering: .relaxed)
        let tallyStart = store.tally.withLock { $0 }
        var listings: [Double] = []
        var falselyOffline: Set<String> = []
        var lastOfflineCheck = ContinuousClock.now
        while ContinuousClock.now - windowStart < .seconds(seconds) {
            let listStart = ContinuousClock.now
            // What GET /api/v1/hosts asks the store for: a page and the tracking watermarks.
            _ = try await base.listHosts(HostFilter(), cursor: nil, limit: 50)
            _ = try await base.hostTrackingWatermarks()
            listings.append((ContinuousClock.now - listStart).seconds * 1000)
            if ContinuousClock.now - lastOfflineCheck >= .seconds(1) {
                falselyOffline.formUnion(try await offlineHosts(base))
                lastOfflineCheck = ContinuousClock.now
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        let window = (ContinuousClock.now - windowStart).seconds
        let cpuEnd = CPUSample.take(pids: [pid])
        let offered = fleet.offered.load(ordering: .relaxed) - offeredStart
        let tallyEnd = store.tally.withLock { $0 }
        let backlog = max(0, fleet.offered.load(ordering: .relaxed) - tallyEnd.heartbeats)
        let processSeconds =
            Double((cpuEnd.processes[pid] ?? 0) - (cpuStart.processes[pid] ?? 0))
            / CPUSample.ticksPerSecond

        // 1% of the hosts stop: how long until each shows offline, measured from its last heartbeat.
        let stoppedIndices = Array(stride(from: 0, to: count, by: 100))
        let lastBeats = fleet.stop(stoppedIndices)
        let stoppedIds = Set(stoppedIndices.map { fleet.hosts[$0].id })
        progress("fleet: \(stoppedIds.count) hosts stopped; waiting for them to show offline (grace \(grace))")
        var detection: [String: Double] = [:]
        let stoppedAt = ContinuousClock.now
        while detection.count < stoppedIds.count, ContinuousClock.now - stoppedAt < grace + .seconds(30) {
            let offline = try await offlineHosts(base)
            let now = ContinuousClock.now
            for id in offline.intersection(stoppedIds) where detection[id] == nil {
                detection[id] = (now - (lastBeats[id] ?? stoppedAt)).seconds
            }
            falselyOffline.formUnion(offline.subtracting(stoppedIds))
            try await Task.sleep(for: .milliseconds(500))
        }
        tracker.cancel()
        _ = await tracker.result

        // The generator alone, for the tracker's share of the process's CPU.
        let generatorStart = CPUSample.take(pids: [pid])
        let generatorWindow = ContinuousClock.now
        try await Task.sleep(for: .seconds(10))
        let generatorSeconds =
            Double(
                (CPUSample.take(pids: [pid]).processes[pid] ?? 0) - (generatorStart.processes[pid] ?? 0))
            / CPUSample.ticksPerSecond
        let generatorShare = generatorSeconds / (ContinuousClock.now - generatorWindow).seconds
        generator.cancel()
        _ = await generator.result
        await log.close()
        await base.close()

        let applied = tallyEnd.heartbeats - tallyStart.heartbeats
        let trackerShare = max(0, processSeconds / window - generatorShare)
        let sortedListings = listings.sorted()
        let sortedDetection = detection.values.sorted()
        let detectionMax = sortedDetection.last ?? 0
        let sweeps = tallyEnd.silentQueryMilliseconds.sorted()
        return Size(
            hosts: count, registrationPerSecond: Double(count) / registrationSeconds, measuredSeconds: window,
            heartbeatsOfferedPerSecond: Double(offered) / window, heartbeatsAppliedPerSecond: Double(applied) / window,
            heartbeatTransactionsPerSecond: Double(tallyEnd.transactions - tallyStart.transactions) / window,
            backlogAtEnd: backlog,
            generatorCoreShare: generatorShare, trackerCoreShare: trackerShare,
            trackerMicrosecondsPerHeartbeat: applied > 0 ? trackerShare * window / Double(applied) * 1e6 : 0,
            silentHostQueryP99Milliseconds: SchedulerBenchmark.percentile(sweeps, 0.99),
            listHostsP50Milliseconds: SchedulerBenchmark.percentile(sortedListings, 0.5),
            listHostsP99Milliseconds: SchedulerBenchmark.percentile(sortedListings, 0.99),
            stopped: stoppedIds.count, detected: detection.count,
            detectionP50Seconds: SchedulerBenchmark.percentile(sortedDetection, 0.5),
            detectionMaxSeconds: detectionMax, falselyOffline: falselyOffline.count,
            goalMet: falselyOffline.isEmpty && detection.count == stoppedIds.count
                && detectionMax <= (grace + detectionSlack).seconds && Double(applied) >= Double(offered) * 0.99)
    }

    /// `count` hosts registered as `agentjobs host register` does (a one-time token each), 32 at a
    /// time so that the store commits them in groups.
    private static func register(_ count: Int, in store: SQLiteStore) async throws -> [(id: String, key: HostEventKey)]
    {
        try await withThrowingTaskGroup(of: (id: String, key: HostEventKey).self) { group in
            var next = 0
            func add() {
                let index = next
                next += 1
                group.addTask {
                    let now = Date()
                    let credential = Secret.generate(prefix: "ajh")
                    let (_, token) = try await store.createRegistrationToken(
                        expiresAt: now.addingTimeInterval(3600), now: now)
                    let host = try await store.registerHost(
                        registrationTokenHash: token.hash, name: String(format: "fleet-%06d", index),
                        managedAgents: [.datahealth], credential: credential, now: now)
                    return (host.id, HostEventKey(credential: credential.value))
                }
            }
            while next < min(32, count) { add() }
            var hosts: [(id: String, key: HostEventKey)] = []
            while let host = try await group.next() {
                hosts.append(host)
                if next < count { add() }
            }
            return hosts
        }
    }

    private static func startTracker(
        store: CountingStore, log: SQLiteMessageLog, producer: SQLiteMessageProducer, partitions: Int32
    ) -> Task<Void, any Error> {
        var configuration = HostTracker<SQLiteMessageConsumer>.Configuration()
        configuration.offlineGrace = grace
        configuration.hostEventsPartitions = partitions
        let consumer = SQLiteMessageConsumer(
            log: log,
            configuration: SQLiteMessageConsumerConfiguration(
                subscription: .group(id: "agentjobs-host-tracker", topics: [Topic.hostEvents])),
            logger: quietLogger("bench.fleet.consumer"))
        let tracker = HostTracker(
            store: store, consumer: consumer, producer: producer, configuration: configuration,
            logger: quietLogger("bench.fleet.tracker"))
        let group = ServiceGroup(services: [tracker, consumer], logger: quietLogger("bench.fleet"))
        return Task { try await group.run() }
    }

    /// The hosts `GET /api/v1/hosts` would show offline now.
    private static func offlineHosts(_ store: SQLiteStore) async throws -> Set<String> {
        let now = Date()
        let silent = try await store.hostsNotHeard(since: now.addingTimeInterval(-grace.seconds))
        guard !silent.isEmpty else { return [] }
        let watermarks = try await store.hostTrackingWatermarks()
        var offline: Set<String> = []
        for host in silent {
            let watermark = host.heartbeatPartition.flatMap { watermarks[$0] }
            if case .offline = host.liveness(now: now, grace: grace, watermark: watermark) { offline.insert(host.id) }
        }
        return offline
    }

    static func text(_ figures: Figures) -> String {
        var lines = [
            "Fleet (virtual hosts heartbeating every \(formatFixed(figures.intervalSeconds, 0)) s into the embedded log,"
                + " one host tracker in this process; grace \(formatFixed(figures.graceSeconds, 0)) s,"
                + " \(figures.partitions) host-event partitions)"
        ]
        for size in figures.sizes {
            lines.append("  \(formatCount(size.hosts)) hosts (measured over \(formatFixed(size.measuredSeconds, 0)) s)")
            lines.append(
                reportLine("  registration (store, 32 at a time)", "\(formatRate(size.registrationPerSecond)) hosts/s"))
            lines.append(
                reportLine(
                    "  heartbeats offered / applied",
                    "\(formatRate(size.heartbeatsOfferedPerSecond))/s / \(formatRate(size.heartbeatsAppliedPerSecond))/s"
                        + " (backlog at the end \(formatCount(size.backlogAtEnd)))"))
            lines.append(
                reportLine(
                    "  store transactions for them",
                    "\(formatFixed(size.heartbeatTransactionsPerSecond, 1))/s"
                        + " (\(formatFixed(size.heartbeatsAppliedPerSecond / max(size.heartbeatTransactionsPerSecond, 0.001), 0)) heartbeats each)"
                ))
            lines.append(
                reportLine(
                    "  tracker CPU",
                    "\(formatPercent(size.trackerCoreShare)) of a core, \(formatFixed(size.trackerMicrosecondsPerHeartbeat, 0)) µs per heartbeat"
                        + " (generator alone: \(formatPercent(size.generatorCoreShare)))"))
            lines.append(
                reportLine(
                    "  silent-host query of a sweep p99", "\(formatFixed(size.silentHostQueryP99Milliseconds, 1)) ms"))
            lines.append(
                reportLine(
                    "  list a page of hosts (store) p50 / p99",
                    "\(formatFixed(size.listHostsP50Milliseconds, 1)) / \(formatFixed(size.listHostsP99Milliseconds, 1)) ms"
                ))
            lines.append(
                reportLine(
                    "  \(size.stopped) hosts stopped: shown offline after",
                    "p50 \(formatFixed(size.detectionP50Seconds, 1)) s, max \(formatFixed(size.detectionMaxSeconds, 1)) s"
                        + " (\(size.detected) of \(size.stopped); goal ≤ \(formatFixed(figures.graceSeconds + detectionSlack.seconds, 0)) s)"
                ))
            lines.append(reportLine("  heartbeating hosts ever shown offline", "\(size.falselyOffline) (goal 0)"))
            lines.append(reportLine("  goal", size.goalMet ? "met" : "NOT met"))
        }
        for failure in figures.failures { lines.append("  FAILED: \(failure)") }
        return lines.joined(separator: "\n")
    }
}

/// The hosts of the benchmark's fleet and their heartbeats: every host once per interval, spread
/// over 100 ms slots, each batch of a slot appended to the log at once (as many orchestrators
/// would, each on its own).
final class VirtualFleet: Sendable {
    let hosts: [(id: String, key: HostEventKey)]
    let offered = Atomic<Int>(0)
    private let state = Mutex<(stopped: Set<Int>, lastBeat: [ContinuousClock.Instant?])>(([], []))

    init(hosts: [(id: String, key: HostEventKey)]) {
        self.hosts = hosts
        state.withLock { $0.lastBeat = Array(repeating: nil, count: hosts.count) }
    }

    func beat(into producer: SQLiteMessageProducer) async {
        let slots = Int(FleetBenchmark.interval / .milliseconds(100))
        var tick = ContinuousClock.now
        var slot = 0
        while !Task.isCancelled {
            let stopped = state.withLock { $0.stopped }
            let indices = stride(from: slot, to: hosts.count, by: slots).filter { !stopped.contains($0) }
            let now = Date()
            let messages = indices.compactMap { index in
                try? HostHeartbeat(
                    hostId: hosts[index].id, sentAt: now, version: "bench", managedAgents: [.datahealth],
                    activeRuns: [], driver: "process"
                ).message(signedWith: hosts[index].key)
            }
            let sentAt = ContinuousClock.now
            for start in stride(from: 0, to: messages.count, by: 500) {
                _ = await producer.sendBatch(Array(messages[start..<min(start + 500, messages.count)]))
            }
            state.withLock { state in
                for index in indices { state.lastBeat[index] = sentAt }
            }
            offered.add(messages.count, ordering: .relaxed)
            slot = (slot + 1) % slots
            tick += .milliseconds(100)
            try? await Task.sleep(until: tick)
        }
    }

    /// Stops these hosts' heartbeats.
    /// - Returns: When each one's last heartbeat was sent.
    func stop(_ indices: [Int]) -> [String: ContinuousClock.Instant] {
        state.withLock { state in
            state.stopped.formUnion(indices)
            var last: [String: ContinuousClock.Instant] = [:]
            for index in indices { last[hosts[index].id] = state.lastBeat[index] }
            return last
        }
    }
}

/// The tracker's store, counting the heartbeats it records and the transactions that took, and
/// timing its silent-host queries.
final class CountingStore: RunEventStore {
    struct Tally: Sendable {
        var heartbeats = 0
        var transactions = 0
        var silentQueryMilliseconds: [Double] = []
    }

    let base: SQLiteStore
    let tally = Mutex(Tally())

    init(_ base: SQLiteStore) { self.base = base }

    func recordHeartbeats(_ heartbeats: [ReceivedHeartbeat]) async throws -> [String: [String]] {
        let stopped = try await base.recordHeartbeats(heartbeats)
        tally.withLock {
            $0.heartbeats += heartbeats.count
            $0.transactions += 1
        }
        return stopped
    }

    func hostsNotHeard(since cutoff: Date) async throws -> [AgentJobsCore.Host] {
        let start = ContinuousClock.now
        let hosts = try await base.hostsNotHeard(since: cutoff)
        let elapsed = (ContinuousClock.now - start).seconds * 1000
        tally.withLock { $0.silentQueryMilliseconds.append(elapsed) }
        return hosts
    }

    func hostCredentialHash(hostId: String) async throws -> String? {
        try await base.hostCredentialHash(hostId: hostId)
    }

    func applyRunEvents(_ events: [RunLifecycleEvent], now: Date) async throws -> [RunEventOutcome] {
        try await base.applyRunEvents(events, now: now)
    }

    func recordTrackingProbe(partition: Int32, trackerId: String, sentAt: Date, readAt: Date, maxDelay: Duration)
        async throws -> HostTrackingWatermark
    {
        try await base.recordTrackingProbe(
            partition: partition, trackerId: trackerId, sentAt: sentAt, readAt: readAt, maxDelay: maxDelay)
    }

    func hostTrackingWatermarks() async throws -> [Int32: HostTrackingWatermark] {
        try await base.hostTrackingWatermarks()
    }

    func hostCount() async throws -> Int { try await base.hostCount() }

    func closeRunsOfOfflineHosts(_ offline: [String: Date], lost: Set<String>, now: Date) async throws -> ExpiredRuns {
        try await base.closeRunsOfOfflineHosts(offline, lost: lost, now: now)
    }

    func trackingProbeSecret() async throws -> String { try await base.trackingProbeSecret() }
}
