import AgentJobsCore
import AgentJobsKafka
import AgentJobsOrchestrator
import AgentJobsTestSupport
import Foundation
import Logging
import Testing

/// The aggregator against events injected straight into `agentjobs.run-events`: the test plays the
/// host (with its real credential from `host register`), so it controls order, duplicates and
/// forgeries exactly.
@Suite("Aggregator end to end", .serialized, .enabled(if: EndToEnd.shouldRun, EndToEnd.skipReason))
struct AggregatorTests {
    /// A producer on the test broker, running for the duration of `body`.
    static func withProducer(_ cluster: Cluster, _ body: (KafkaProducer) async throws -> Void) async throws {
        var logger = Logger(label: "e2e.producer")
        logger.logLevel = .warning
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                client: KafkaClientConfiguration(
                    bootstrapServers: RequiredService.brokerList(cluster.brokers))),
            logger: logger)
        let running = Task { try await producer.run() }
        do {
            try await body(producer)
        } catch {
            running.cancel()
            _ = await running.result
            throw error
        }
        running.cancel()
        _ = await running.result
    }

    static func event(
        _ type: RunEventType, run: String, job: String, host: String, sequence: Int, at: Date, exitCode: Int? = nil,
        summary: String? = nil
    ) -> RunLifecycleEvent {
        RunLifecycleEvent(
            type: type, runId: run, jobId: job, hostId: host, dispatchEpoch: 1, sequence: sequence, at: at,
            exitCode: exitCode,
            errorSummary: summary)
    }

    static func send(_ producer: KafkaProducer, _ messages: [OutgoingMessage]) async throws {
        for result in await producer.sendBatch(messages) { _ = try result.get() }
    }

    @Test("duplicated, reordered and forged events never corrupt a run")
    func hostileEvents() async throws {
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "played", startOrchestrator: false)
            let other = try await cluster.addHost(name: "neighbour", startOrchestrator: false)
            let key = try HostIdentity.load(from: try #require(cluster.hostDirectories[host])).eventKey
            let otherKey = try HostIdentity.load(from: try #require(cluster.hostDirectories[other])).eventKey
            let job = try await cluster.createJob(hostId: host)
            let run = try await cluster.api.trigger(job)
            let t0 = Date()
            let started = Self.event(.started, run: run, job: job, host: host, sequence: 2, at: t0)
            let succeeded = Self.event(
                .succeeded, run: run, job: job, host: host, sequence: 3, at: t0.addingTimeInterval(2), exitCode: 0)
            // Forged: a failure "from" the run's host signed with another key; a failure from a
            // registered neighbour (valid signature, wrong host); garbage; an unknown version.
            let forged = try Self.event(
                .failed, run: run, job: job, host: host, sequence: 4, at: t0, exitCode: 9, summary: "forged"
            )
            .message(signedWith: HostEventKey(credential: "ajh_not_the_credential"))
            let neighbour = try Self.event(
                .failed, run: run, job: job, host: other, sequence: 1, at: t0, exitCode: 9, summary: "neighbour"
            ).message(signedWith: otherKey)
            var unknownVersion = try succeeded.message(signedWith: key)
            unknownVersion.headers = unknownVersion.headers.map {
                $0.key == "ce_type" ? MessageHeader(key: "ce_type", value: "agentjobs.run.failed.v9") : $0
            }
            let garbage = OutgoingMessage(topic: Topic.runEvents, key: run, value: [0xde, 0xad, 0xbe, 0xef])
            try await Self.withProducer(cluster) { producer in
                try await Self.send(
                    producer,
                    [
                        forged, neighbour, garbage, unknownVersion, try succeeded.message(signedWith: key),
                        try started.message(signedWith: key), try succeeded.message(signedWith: key),
                        try started.message(signedWith: key), forged,
                    ])
            }
            let done = try await cluster.waitForStatus(run, "succeeded")
            #expect(done["exitCode"]?.number == 0)
            #expect(done["errorSummary"]?.string == nil)
            // The succeeded event came first: the start is recorded at the same instant, never after.
            #expect(done["startedAt"]?.string == ISO8601.format(succeeded.at))
            #expect(done["finishedAt"]?.string == ISO8601.format(succeeded.at))
            // Give the aggregator time to read everything, then check nothing moved the run.
            try await Task.sleep(for: .seconds(2))
            let after = try await cluster.api.call(.GET, "/runs/\(run)", expect: 200)
            #expect(after["status"]?.string == "succeeded")
            // Each hostile event is in the dead-letter topic under the run's key, with its reason (read
            // from the topic: the aggregator's log also carries the noise of other tests' clusters on
            // the same broker, whose aggregators dead-letter this run's events as from unknown hosts).
            let expected = ["bad_signature", "wrong_host", "unknown_version", "missing_header"]
            let letters = try await DeadLetters.read(brokers: cluster.brokers, key: run, from: Topic.runEvents) {
                reasons in expected.allSatisfy { code in reasons.contains { $0.hasPrefix(code) } }
            }
            for code in expected {
                #expect(letters.contains { $0.hasPrefix(code) }, "no \(code) dead letter among \(letters)")
            }
        }
    }

    @Test("kill -9 of the aggregator at random points during 2,000 runs: every run ends exactly as its host reported")
    func aggregatorCrashes() async throws {
        // The played host never sends heartbeats: a grace longer than the test keeps the host
        // tracker from failing runs as "host lost" while 2,000 runs are created on a loaded machine.
        try await Cluster.run(offlineGraceSeconds: 3600) { cluster in
            let host = try await cluster.addHost(name: "played", startOrchestrator: false)
            let key = try HostIdentity.load(from: try #require(cluster.hostDirectories[host])).eventKey
            let count = 2_000
            var runs: [(job: String, run: String)] = []
            for _ in 0..<count {
                let job = try await cluster.createJob(hostId: host)
                runs.append((job, try await cluster.api.trigger(job)))
            }
            // The host's record: each run fails (exit 3) or succeeds, decided here.
            var generator = SystemRandomNumberGenerator()
            let outcomes = runs.map { _ in Bool.random(using: &generator) }
            let t0 = Date()
            try await Self.withProducer(cluster) { producer in
                for chunk in stride(from: 0, to: count, by: 200) {
                    var messages: [OutgoingMessage] = []
                    for index in chunk..<min(chunk + 200, count) {
                        let (job, run) = runs[index]
                        messages.append(
                            try Self.event(.accepted, run: run, job: job, host: host, sequence: 1, at: t0).message(
                                signedWith: key))
                        messages.append(
                            try Self.event(.started, run: run, job: job, host: host, sequence: 2, at: t0).message(
                                signedWith: key))
                        let end =
                            outcomes[index]
                            ? Self.event(.succeeded, run: run, job: job, host: host, sequence: 3, at: t0, exitCode: 0)
                            : Self.event(
                                .failed, run: run, job: job, host: host, sequence: 3, at: t0, exitCode: 3,
                                summary: "boom")
                        messages.append(try end.message(signedWith: key))
                    }
                    try await Self.send(producer, messages)
                    // Kill the aggregator at a random point of the stream, three times, and restart it.
                    if [400, 1000, 1600].contains(chunk) {
                        try await Task.sleep(for: .milliseconds(Int.random(in: 0...300, using: &generator)))
                        await cluster.aggregators[0].kill9()
                        try await cluster.restartAggregator(0)
                    }
                }
            }
            var open: [Int] = Array(0..<count)
            let deadline = ContinuousClock.now + .seconds(120)
            while !open.isEmpty && ContinuousClock.now < deadline {
                let page = try await cluster.api.call(.GET, "/runs?status=running&limit=1", expect: 200)
                let queued = try await cluster.api.call(.GET, "/runs?status=queued&limit=1", expect: 200)
                if page["runs"]?.array.isEmpty == true && queued["runs"]?.array.isEmpty == true { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            var mismatches: [String] = []
            for (index, entry) in runs.enumerated() {
                let run = try await cluster.api.call(.GET, "/runs/\(entry.run)", expect: 200)
                let expected = outcomes[index] ? "succeeded" : "failed"
                if run["status"]?.string != expected || run["exitCode"]?.number != (outcomes[index] ? 0 : 3) {
                    mismatches.append(
                        "\(entry.run): \(run["status"]?.string ?? "?") (expected \(expected)) exit code \(run["exitCode"] ?? .null), \(run["errorSummary"]?.string ?? "")"
                    )
                }
            }
            open.removeAll()
            #expect(
                mismatches.isEmpty, "\(mismatches.count) runs differ from the host's record: \(mismatches.prefix(5))")
        }
    }

    @Test("two aggregator replicas share the events; when one is killed the other takes over its partitions")
    func replicaTakeover() async throws {
        try await Cluster.run { cluster in
            // The second replica joins the group: a rebalance hands it some of the partitions.
            try await Cluster.waitForAssignment(of: try await cluster.startAggregator(), topics: [Topic.runEvents])
            let host = try await cluster.addHost(name: "played", startOrchestrator: false)
            let key = try HostIdentity.load(from: try #require(cluster.hostDirectories[host])).eventKey
            func play(_ count: Int) async throws -> [String] {
                var runs: [String] = []
                try await Self.withProducer(cluster) { producer in
                    for _ in 0..<count {
                        let job = try await cluster.createJob(hostId: host)
                        let run = try await cluster.api.trigger(job)
                        runs.append(run)
                        try await Self.send(
                            producer,
                            [
                                try Self.event(
                                    .succeeded, run: run, job: job, host: host, sequence: 1, at: Date(), exitCode: 0
                                )
                                .message(signedWith: key)
                            ])
                    }
                }
                return runs
            }
            // Both replicas apply events once the group has settled.
            for run in try await play(40) { try await cluster.waitForStatus(run, "succeeded", timeout: .seconds(60)) }
            let applied = cluster.aggregators.map {
                $0.capturedOutput.components(separatedBy: "run status changed").count - 1
            }
            #expect(applied.allSatisfy { $0 > 0 }, "each replica applied some of the events: \(applied)")
            // One dies; the other takes over its partitions and nothing is lost.
            await cluster.aggregators[0].kill9()
            for run in try await play(40) { try await cluster.waitForStatus(run, "succeeded", timeout: .seconds(90)) }
        }
    }
}
