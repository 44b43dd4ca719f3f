import AgentJobsAggregator
import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// `HostTracker` in process on the embedded log and SQLite: "host lost" is decided on evidence about
/// the host, never on the tracker's own pause.
///
/// Timing is scaled down (a 6 s grace, probes every 0.2 s; the probe delay limit is the default 10 s)
/// so that a stop of two graces fits a component test; the rule does not depend on the scale (see `HostLivenessTests` for the values).
///
/// The tests measure how soon a tracker decides, so they run one at a time, and `make test` runs
/// this suite on its own after the rest (deploy/testenv/run-tests.sh): on the 2-core CI machine the
/// rest of the suite in parallel delayed the tracker's probes by over ten seconds.
@Suite("Host tracker", .serialized, .timeLimit(.minutes(2)))
struct HostTrackerTests {
    let grace = Duration.seconds(6)

    /// A registered host with a running run, and its heartbeats.
    final class SimulatedHost: Sendable {
        let host: AgentJobsCore.Host
        let key: HostEventKey
        let run: Run
        let beating = Mutex(true)

        init(host: AgentJobsCore.Host, key: HostEventKey, run: Run) {
            self.host = host
            self.key = key
            self.run = run
        }
    }

    final class Bench: Sendable {
        let directory: URL
        let store: SQLiteStore
        let log: SQLiteMessageLog
        let producer: SQLiteMessageProducer
        let partitions: Int32

        init() async throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-tracker-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            store = try SQLiteStore(path: directory.appendingPathComponent("db.sqlite").path)
            log = SQLiteMessageLog(sharing: store.database)
            producer = SQLiteMessageProducer(log: log)
            partitions = try await log.createTopic(Topic.hostEvents, partitionCount: 4)
        }

        func host(_ name: String) async throws -> SimulatedHost {
            let now = Date()
            let credential = Secret.generate(prefix: "ajh")
            let (_, registration) = try await store.createRegistrationToken(
                expiresAt: now.addingTimeInterval(60), now: now)
            let host = try await store.registerHost(
                registrationTokenHash: registration.hash, name: name, managedAgents: [.datahealth],
                credential: credential, now: now)
            let job = try await store.createJob(
                JobDefinition(name: name, hostId: host.id, agentType: .datahealth, parameters: .file(fileName: "f")),
                now: now)
            let run = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: now)
            _ = try await store.applyRunEvents(
                [
                    RunLifecycleEvent(
                        type: .started, runId: run.id, jobId: job.id, hostId: host.id, dispatchEpoch: 1, sequence: 1,
                        at: now)
                ], now: now)
            return SimulatedHost(host: host, key: HostEventKey(credential: credential.value), run: run)
        }

        /// Publishes a heartbeat of every host that is beating, every 250 ms, until cancelled.
        func heartbeats(_ hosts: [SimulatedHost]) -> Task<Void, Never> {
            Task {
                while !Task.isCancelled {
                    for host in hosts where host.beating.withLock({ $0 }) {
                        let heartbeat = HostHeartbeat(
                            hostId: host.host.id, sentAt: Date(), version: "test", managedAgents: [.datahealth],
                            activeRuns: [.init(runId: host.run.id, dispatchEpoch: 1, status: .running)],
                            driver: "process")
                        _ = try? await producer.send(try heartbeat.message(signedWith: host.key))
                    }
                    try? await Task.sleep(for: .milliseconds(250))
                }
            }
        }

        /// Starts a tracker replica (consumer and tracker) on `store` (default: the bench's); cancel
        /// the task to stop it.
        func tracker(
            grace: Duration, store: (any RunEventStore)? = nil, producer: (any MessageProducer)? = nil
        ) -> Task<Void, any Error> {
            var configuration = HostTracker<SQLiteMessageConsumer>.Configuration()
            configuration.offlineGrace = grace
            // The runs' status shows when the host was declared offline.
            configuration.runsLostAfter = grace
            configuration.sweepInterval = .milliseconds(200)
            configuration.probeInterval = .milliseconds(200)
            // probeMaxDelay stays at its default (10 s): the two-grace stop below is longer.
            configuration.hostEventsPartitions = partitions
            var consumerConfiguration = SQLiteMessageConsumerConfiguration(
                subscription: .group(id: "host-tracker", topics: [Topic.hostEvents]))
            consumerConfiguration.leaseDuration = .seconds(1)
            let consumer = SQLiteMessageConsumer(
                log: log, configuration: consumerConfiguration, logger: testLogger("tracker-consumer"))
            let tracker = HostTracker(
                store: store ?? self.store, consumer: consumer, producer: producer ?? self.producer,
                configuration: configuration,
                logger: testLogger("tracker"))
            let group = ServiceGroup(services: [tracker, consumer], logger: testLogger("tracker-group"))
            return Task { try await group.run() }
        }

        /// `count` registered hosts without runs (`count` concurrent registrations, so that the
        /// store commits them in groups).
        func fleet(_ count: Int) async throws -> [(host: AgentJobsCore.Host, key: HostEventKey)] {
            try await withThrowingTaskGroup(of: (AgentJobsCore.Host, HostEventKey).self) { group in
                for index in 0..<count {
                    group.addTask { [store] in
                        let now = Date()
                        let credential = Secret.generate(prefix: "ajh")
                        let (_, registration) = try await store.createRegistrationToken(
                            expiresAt: now.addingTimeInterval(600), now: now)
                        let host = try await store.registerHost(
                            registrationTokenHash: registration.hash, name: "fleet-\(index)",
                            managedAgents: [.datahealth], credential: credential, now: now)
                        return (host, HostEventKey(credential: credential.value))
                    }
                }
                var hosts: [(host: AgentJobsCore.Host, key: HostEventKey)] = []
                for try await host in group { hosts.append(host) }
                return hosts
            }
        }

        /// The ids of the hosts the API shows offline now (the same judgement as `GET /hosts`).
        func offlineHosts() async throws -> Set<String> {
            let now = Date()
            let silent = try await store.hostsNotHeard(since: now.addingTimeInterval(-6))
            let watermarks = try await store.hostTrackingWatermarks()
            var offline: Set<String> = []
            for host in silent {
                let watermark = host.heartbeatPartition.flatMap { watermarks[$0] }
                if case .offline = host.liveness(now: now, grace: .seconds(6), watermark: watermark) {
                    offline.insert(host.id)
                }
            }
            return offline
        }

        func status(_ host: SimulatedHost) async throws -> RunStatus? {
            try await store.run(id: host.run.id)?.status
        }

        /// How long `host`'s run stays running from now (polled; at most 20 s).
        func timeUntilRunEnds(of host: SimulatedHost) async throws -> Duration {
            let start = ContinuousClock.now
            while try await status(host) == .running, ContinuousClock.now - start < .seconds(20) {
                try await Task.sleep(for: .milliseconds(100))
            }
            return ContinuousClock.now - start
        }

        /// Every message in `topic` so far (read without a group).
        func messages(in topic: String) async throws -> [IncomingMessage] {
            guard let count = try await log.partitionCount(ofTopic: topic) else { return [] }
            var messages: [IncomingMessage] = []
            for partition in 0..<count {
                let consumer = SQLiteMessageConsumer(
                    log: log,
                    configuration: SQLiteMessageConsumerConfiguration(
                        subscription: .assignment(
                            groupID: "check-\(UUID())", partitions: [TopicPartition(topic: topic, partition: partition)]
                        )),
                    logger: testLogger("check"))
                let reading = Task { try await consumer.run() }
                // Whatever is there arrives within a poll; stop after a quiet 300 ms.
                let collected = Task {
                    var found: [IncomingMessage] = []
                    for try await message in consumer.messages { found.append(message) }
                    return found
                }
                try await Task.sleep(for: .milliseconds(300))
                reading.cancel()
                collected.cancel()
                messages += (try? await collected.value) ?? []
            }
            return messages
        }

        func close() async {
            await log.close()
            await store.close()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    @Test(
        "a tracker stopped for two grace periods and restarted declares no heartbeating host lost, and a host silent since the stop only a full grace after the restart"
    )
    func restartGivesAFreshGrace() async throws {
        let bench = try await Bench()
        let alive = try await bench.host("alive")
        let dead = try await bench.host("dead")
        let pausedWithTracker = try await bench.host("paused")
        let beats = bench.heartbeats([alive, dead, pausedWithTracker])
        // `dead` sends its first heartbeats and stops as the tracker starts.
        try await Task.sleep(for: .milliseconds(300))
        dead.beating.withLock { $0 = false }

        // A host that stopped beating is found lost within the grace plus the probe and sweep pace.
        let first = bench.tracker(grace: grace)
        let detection = try await bench.timeUntilRunEnds(of: dead)
        #expect(try await bench.status(dead) == .failed)
        #expect(detection >= grace && detection < grace + .seconds(4), "detected after \(detection)")

        // The tracker stops (as on kill -9 or an outage) for two graces; one host stops with it.
        first.cancel()
        _ = await first.result
        pausedWithTracker.beating.withLock { $0 = false }
        try await Task.sleep(for: grace * 2)
        #expect(try await bench.status(alive) == .running)
        #expect(try await bench.status(pausedWithTracker) == .running)

        let second = bench.tracker(grace: grace)
        let afterRestart = try await bench.timeUntilRunEnds(of: pausedWithTracker)
        #expect(try await bench.status(pausedWithTracker) == .failed)
        #expect(afterRestart >= grace, "declared lost \(afterRestart) after the restart, before a full grace")
        // The bound: grace + 10 s, also right after a restart (which adds the consumer's
        // rejoin and the first probe's round trip to the steady-state pace checked above).
        #expect(afterRestart < grace + .seconds(10), "declared lost only \(afterRestart) after the restart")
        #expect(try await bench.status(alive) == .running)
        let hosts = try await bench.store.listHosts()
        #expect(hosts.first { $0.id == alive.host.id }?.heartbeatPartition != nil)

        beats.cancel()
        second.cancel()
        _ = await second.result
        await bench.close()
    }

    /// Issue 18's must-hold: a fleet of a few thousand hosts on one tracker. 2,000 hosts heartbeat
    /// every second (2,000 signed heartbeats a second on the embedded log, published in batches as
    /// many orchestrators would), 20 of them with a running run; those 20 stop.
    @Test(
        "2,000 hosts heartbeating every second all stay online; the 20 that stop are declared lost within grace + 4 s, and no other host ever shows offline"
    )
    func fleetOfTwoThousandHosts() async throws {
        let bench = try await Bench()
        let quiet = try await bench.fleet(1980)
        var hosts: [SimulatedHost] = []
        for index in 0..<20 { hosts.append(try await bench.host("stopping-\(index)")) }
        let stopping = hosts
        let beats = Task {
            while !Task.isCancelled {
                let round = ContinuousClock.now
                var messages = try quiet.map { host, key in
                    try HostHeartbeat(
                        hostId: host.id, sentAt: Date(), version: "test", managedAgents: [.datahealth],
                        activeRuns: [], driver: "process"
                    ).message(signedWith: key)
                }
                for host in stopping where host.beating.withLock({ $0 }) {
                    messages.append(
                        try HostHeartbeat(
                            hostId: host.host.id, sentAt: Date(), version: "test", managedAgents: [.datahealth],
                            activeRuns: [.init(runId: host.run.id, dispatchEpoch: 1, status: .running)],
                            driver: "process"
                        ).message(signedWith: host.key))
                }
                for start in stride(from: 0, to: messages.count, by: 500) {
                    _ = await bench.producer.sendBatch(Array(messages[start..<min(start + 500, messages.count)]))
                }
                try? await Task.sleep(until: round + .seconds(1))
            }
        }
        let tracker = bench.tracker(grace: grace)
        // Every host seen once, then a grace of steady state.
        let start = ContinuousClock.now
        while try await bench.store.hostsNotHeard(since: Date().addingTimeInterval(-1)).count > 0,
            ContinuousClock.now - start < .seconds(30)
        {
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(try await bench.store.hostsNotHeard(since: Date().addingTimeInterval(-2)).isEmpty)
        var falselyOffline: Set<String> = []
        let steady = ContinuousClock.now
        while ContinuousClock.now - steady < grace {
            falselyOffline.formUnion(try await bench.offlineHosts())
            try await Task.sleep(for: .milliseconds(500))
        }

        for host in stopping { host.beating.withLock { $0 = false } }
        let stoppedAt = ContinuousClock.now
        let stoppingIds = Set(stopping.map(\.host.id))
        var lostAfter: [String: Duration] = [:]
        while lostAfter.count < stopping.count, ContinuousClock.now - stoppedAt < grace + .seconds(15) {
            for host in stopping where lostAfter[host.host.id] == nil {
                if try await bench.status(host) == .failed { lostAfter[host.host.id] = ContinuousClock.now - stoppedAt }
            }
            falselyOffline.formUnion(try await bench.offlineHosts().subtracting(stoppingIds))
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(
            lostAfter.count == stopping.count, "\(stopping.count - lostAfter.count) stopped hosts never declared lost")
        let slowest = lostAfter.values.max() ?? .zero
        #expect(slowest < grace + .seconds(4), "the last stopped host was declared lost \(slowest) after it stopped")
        // The stopped hosts' last heartbeats were sent up to a second before the stop.
        #expect((lostAfter.values.min() ?? .zero) >= grace - .seconds(1))
        #expect(falselyOffline.isEmpty, "\(falselyOffline.count) heartbeating hosts were shown offline")
        #expect(try await bench.offlineHosts() == stoppingIds)

        beats.cancel()
        tracker.cancel()
        _ = await tracker.result
        await bench.close()
    }

    @Test(
        "a heartbeat that cannot be recorded while the store is down is retried and not committed, and is recorded and committed once the store is back"
    )
    func heartbeatRetriedThroughAStoreOutage() async throws {
        let bench = try await Bench()
        let host = try await bench.host("outage")
        let store = StatusAggregatorTests.ObservedStore(bench.store) { [:] }
        store.availability.withLock { $0 = .unavailable }
        let tracker = bench.tracker(grace: grace, store: store)
        let heartbeat = HostHeartbeat(
            hostId: host.host.id, sentAt: Date(), version: "test", managedAgents: [.datahealth],
            activeRuns: [.init(runId: host.run.id, dispatchEpoch: 1, status: .running)], driver: "process")
        let position = try await bench.producer.send(try heartbeat.message(signedWith: host.key))
        func committed() async throws -> Int64 {
            try await bench.log.committedOffset(groupID: "host-tracker", topicPartition: position.topicPartition) ?? 0
        }
        let outageStart = ContinuousClock.now
        // Reading the host's key fails first (the tracker has not cached it yet), then recording would.
        func failures() -> Int { store.snapshot.failedLookups + store.snapshot.failedHeartbeats }
        while failures() < 2, ContinuousClock.now - outageStart < .seconds(15) {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(failures() >= 2, "the tracker retries the heartbeat while the store is down")
        // Probes before the heartbeat may be committed; nothing at or after it is.
        #expect(try await committed() <= position.offset)
        #expect(try await bench.store.host(id: host.host.id)?.lastSeenAt == nil)

        store.availability.withLock { $0 = .available }
        let recoveredAt = ContinuousClock.now
        while try await committed() <= position.offset, ContinuousClock.now - recoveredAt < .seconds(15) {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try await committed() > position.offset)
        #expect(try await bench.store.host(id: host.host.id)?.lastSeenAt != nil)
        tracker.cancel()
        _ = await tracker.result
        await bench.close()
    }

    @Test("a revoked host's heartbeats are dead-lettered as revoked_host within 5 s")
    func revokedHostIsRefused() async throws {
        let bench = try await Bench()
        let host = try await bench.host("revoked")
        let beats = bench.heartbeats([host])
        let tracker = bench.tracker(grace: grace)
        // Heard first (its key is cached by the tracker), then revoked.
        while try await bench.store.host(id: host.host.id)?.lastSeenAt == nil {
            try await Task.sleep(for: .milliseconds(100))
        }
        let revokedAt = Date()
        _ = try await bench.store.revokeHost(id: host.host.id, now: revokedAt)
        let polling = ContinuousClock.now
        var letters: [IncomingMessage] = []
        func refused(_ letter: IncomingMessage) -> Bool {
            letter.header(WireHeader.deadLetterReason)?.stringValue?.hasPrefix("revoked_host") == true
        }
        while !letters.contains(where: refused), ContinuousClock.now - polling < .seconds(15) {
            try await Task.sleep(for: .milliseconds(250))
            letters = try await bench.messages(in: Topic.deadLetter)
        }
        let reasons = letters.compactMap { $0.header(WireHeader.deadLetterReason)?.stringValue }
        // When the first refusal was written (the log's append time), not when this loop saw it.
        let firstRefusal = letters.filter(refused).compactMap(\.timestamp).min()
        let refusedAfter = Duration.seconds(firstRefusal.map { $0.timeIntervalSince(revokedAt) } ?? .infinity)
        beats.cancel()
        tracker.cancel()
        _ = await tracker.result
        #expect(reasons.contains { $0.hasPrefix("revoked_host") }, "\(reasons)")
        // The key cache lives 4 s, the heartbeat pace and the dead-letter check add a little.
        #expect(refusedAfter < .seconds(8), "refused only after \(refusedAfter)")
        await bench.close()
    }

    @Test("a probe signed with another key is dead-lettered and moves no watermark")
    func forgedProbeIsRefused() async throws {
        let bench = try await Bench()
        let forger = HostEventKey(credential: "ajh_forged")
        let partition = Murmur2Partitioner.partition(forKey: "host-tracking-probe-0", partitionCount: bench.partitions)
        // Claims tracking has read an hour ahead: if it were accepted, every silent host would be lost.
        let forged = try HostTrackingProbe(
            trackerId: "evil", partition: partition, sentAt: Date().addingTimeInterval(3600)
        )
        .message(key: "host-tracking-probe-0", signedWith: forger)
        _ = try await bench.producer.send(forged)
        let tracker = bench.tracker(grace: grace)
        // The tracker reads the forgery (and its own probes) and dead-letters the forgery.
        let deadline = ContinuousClock.now + .seconds(30)
        var deadLetters: [IncomingMessage] = []
        while deadLetters.isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            deadLetters = try await bench.messages(in: Topic.deadLetter)
        }
        tracker.cancel()
        _ = await tracker.result
        #expect(deadLetters.count == 1)
        let reason = deadLetters.first?.header(WireHeader.deadLetterReason)?.stringValue ?? ""
        #expect(reason.contains("signature"), "\(reason)")
        // Only the tracker's own probes moved the watermark: it never claims a read it did not make.
        let watermark = try await bench.store.hostTrackingWatermarks()[partition]
        #expect(watermark.map { $0.readThrough <= Date() } ?? true)
        await bench.close()
    }

    /// Counts the dead letters a producer is given, and in how many calls.
    final class CountingProducer: MessageProducer {
        let base: SQLiteMessageProducer
        let counts = Mutex((deadLetters: 0, calls: 0))

        init(_ base: SQLiteMessageProducer) { self.base = base }

        private func count(_ messages: [OutgoingMessage]) {
            let letters = messages.filter { $0.topic == Topic.deadLetter }.count
            guard letters > 0 else { return }
            counts.withLock {
                $0.deadLetters += letters
                $0.calls += 1
            }
        }

        func send(_ message: OutgoingMessage) async throws -> MessagePosition {
            count([message])
            return try await base.send(message)
        }

        func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
            count(messages)
            return await base.sendBatch(messages)
        }
    }

    @Test("a flood of events tracking cannot verify is dead-lettered in batches, not with one awaited send each")
    func floodIsDeadLetteredInBatches() async throws {
        let bench = try await Bench()
        let forger = HostEventKey(credential: "ajh_forged")
        let flood = 300
        var forged: [OutgoingMessage] = []
        for index in 0..<flood {
            let key = "host-tracking-probe-\(index % 4)"
            let partition = Murmur2Partitioner.partition(forKey: key, partitionCount: bench.partitions)
            forged.append(
                try HostTrackingProbe(trackerId: "other-control-plane", partition: partition, sentAt: Date())
                    .message(key: key, signedWith: forger))
        }
        for result in await bench.producer.sendBatch(forged) { _ = try result.get() }
        let producer = CountingProducer(bench.producer)
        let tracker = bench.tracker(grace: grace, producer: producer)
        let deadline = ContinuousClock.now + .seconds(30)
        while producer.counts.withLock({ $0.deadLetters }) < flood, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        tracker.cancel()
        _ = await tracker.result
        let counts = producer.counts.withLock { $0 }
        #expect(counts.deadLetters == flood)
        // One call per batch the consumer hands over (up to 256 messages), not one per message.
        #expect(counts.calls < flood / 10, "\(counts.calls) producer calls for \(flood) dead letters")
        #expect(try await bench.messages(in: Topic.deadLetter).count == flood)
        await bench.close()
    }
}
