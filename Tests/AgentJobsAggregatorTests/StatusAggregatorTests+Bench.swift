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

/// The aggregator tests' bench: a store and embedded log in a temporary directory, registered
/// hosts, signed events, and store and producer wrappers that can fail and record what happened.
extension StatusAggregatorTests {
    // MARK: Events

    /// A whole second (so that times survive the wire's and the store's millisecond precision
    /// exactly), after now.
    static func nextWholeSecond() -> Date {
        Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 1).rounded(.up))
    }

    static func event(
        _ type: RunEventType, _ run: Run, host: String, sequence: Int, at: Date, exitCode: Int? = nil,
        summary: String? = nil
    ) -> RunLifecycleEvent {
        RunLifecycleEvent(
            type: type, runId: run.id, jobId: run.jobId, hostId: host, dispatchEpoch: run.dispatchEpoch,
            sequence: sequence, at: at, exitCode: exitCode, errorSummary: summary)
    }

    /// What a host reports for a run that succeeds: accepted at `t0`, started 1 s later, succeeded
    /// (exit code 0) at `t0` + 5 s.
    static func succeeding(_ run: Run, from host: PlayedHost, at t0: Date) -> [RunLifecycleEvent] {
        [
            event(.accepted, run, host: host.id, sequence: 1, at: t0),
            event(.started, run, host: host.id, sequence: 2, at: t0.addingTimeInterval(1)),
            event(.succeeded, run, host: host.id, sequence: 3, at: t0.addingTimeInterval(5), exitCode: 0),
        ]
    }

    static func signed(_ events: [RunLifecycleEvent], with key: HostEventKey) throws -> [OutgoingMessage] {
        try events.map { try $0.message(signedWith: key) }
    }

    static func eventKey(_ event: RunLifecycleEvent) -> String { "\(event.runId)#\(event.sequence)" }

    static func isApplied(_ outcome: RunEventOutcome) -> Bool {
        if case .applied = outcome { return true }
        return false
    }

    static func isIgnored(_ outcome: RunEventOutcome) -> Bool {
        if case .ignored = outcome { return true }
        return false
    }

    /// Where a group that handled the messages at `positions` has committed: one past the last
    /// offset in each partition.
    static func ends(_ positions: [MessagePosition]) -> [TopicPartition: Int64] {
        var ends: [TopicPartition: Int64] = [:]
        for position in positions {
            ends[position.topicPartition] = max(ends[position.topicPartition] ?? 0, position.offset + 1)
        }
        return ends
    }

    // MARK: Expectations

    /// Every run succeeded as ``succeeding(_:from:at:)`` reported it.
    static func expectSucceeded(_ runs: [Run], at t0: Date) {
        for run in runs {
            #expect(run.status == .succeeded, "\(run.id)")
            #expect(run.startedAt == t0.addingTimeInterval(1), "\(run.id)")
            #expect(run.finishedAt == t0.addingTimeInterval(5), "\(run.id)")
            #expect(run.exitCode == 0, "\(run.id)")
            #expect(run.errorSummary == nil, "\(run.id)")
        }
    }

    /// Each run's records came in increasing revisions, none twice, ending with the one terminal
    /// record: succeeded with exit code 0 at `finishedAt`.
    static func expectOneRecordPerChange(of runs: [Run], in records: [PublishedRecord], finishedAt: Date) {
        for run in runs {
            let ofRun = records.filter { $0.record.run.id == run.id }.map(\.record)
            let revisions = ofRun.map(\.revision)
            #expect(
                zip(revisions, revisions.dropFirst()).allSatisfy { $0 < $1 }, "revisions of \(run.id): \(revisions)")
            #expect(revisions.filter { $0 == 3 }.count == 1, "revisions of \(run.id): \(revisions)")
            #expect(ofRun.last?.revision == 3)
            #expect(ofRun.last?.run.status == .succeeded)
            #expect(ofRun.last?.run.exitCode == 0)
            #expect(ofRun.last?.run.finishedAt == finishedAt)
        }
    }

    /// A run record as published: decoded, and its body as sent.
    struct PublishedRecord {
        let record: RunStatusRecord
        let body: [UInt8]

        init(_ message: OutgoingMessage) throws {
            record = try WireJSON.decoder.decode(RunStatusRecord.self, from: Data(message.value))
            body = message.value
        }
    }

    /// The run records among `publishes`, in the order they were published.
    static func records(in publishes: [ObservedProducer.Publish]) throws -> [PublishedRecord] {
        try publishes.flatMap(\.messages).filter { $0.topic == Topic.runStatus }.map { try PublishedRecord($0) }
    }

    // MARK: Bench

    /// A registered host the test plays: its id and its event-signing key.
    struct PlayedHost: Sendable {
        let id: String
        let key: HostEventKey
    }

    /// Runs `body` on a fresh bench, which is closed afterwards (every aggregator still running stopped).
    static func withBench(_ body: (Bench) async throws -> Void) async throws {
        let bench = try await Bench()
        do {
            try await body(bench)
        } catch {
            await bench.close()
            throw error
        }
        await bench.close()
    }

    /// A store and the embedded log in one temporary SQLite database, as `agentjobs dev` has them.
    final class Bench: Sendable {
        let directory: URL
        let store: SQLiteStore
        let log: SQLiteMessageLog
        /// The hosts' producer (the aggregator gets an ``ObservedProducer`` of its own).
        let producer: SQLiteMessageProducer
        let partitions: Int32
        private let started = Mutex<[RunningAggregator]>([])

        init() async throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-aggregator-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            store = try SQLiteStore(path: directory.appendingPathComponent("db.sqlite").path)
            log = SQLiteMessageLog(sharing: store.database)
            producer = SQLiteMessageProducer(log: log)
            partitions = try await log.createTopic(
                Topic.runEvents, partitionCount: log.configuration.defaultPartitionCount)
        }

        /// Registers a host with a registration token, as `agentjobs host register` does.
        func host(_ name: String) async throws -> PlayedHost {
            let now = Date()
            let credential = Secret.generate(prefix: "ajh")
            let (_, registration) = try await store.createRegistrationToken(
                expiresAt: now.addingTimeInterval(60), now: now)
            let host = try await store.registerHost(
                registrationTokenHash: registration.hash, name: name, managedAgents: [.datahealth],
                credential: credential, now: now)
            return PlayedHost(id: host.id, key: HostEventKey(credential: credential.value))
        }

        /// Creates a job on `host` and triggers it.
        func queuedRun(on host: PlayedHost, job name: String) async throws -> Run {
            let now = Date()
            let job = try await store.createJob(
                JobDefinition(name: name, hostId: host.id, agentType: .datahealth, parameters: .file(fileName: "f")),
                now: now)
            return try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: now)
        }

        func queuedRuns(_ count: Int, on host: PlayedHost) async throws -> [Run] {
            var runs: [Run] = []
            for index in 0..<count { runs.append(try await queuedRun(on: host, job: "job-\(index)")) }
            return runs
        }

        /// The runs as stored now.
        func stored(_ runs: [Run]) async throws -> [Run] {
            var stored: [Run] = []
            for run in runs {
                guard let current = try await store.run(id: run.id) else {
                    throw StoreError(.notFound, "run \(run.id) is not in the store")
                }
                stored.append(current)
            }
            return stored
        }

        /// Appends `messages` in one transaction, as a host's producer would.
        /// - Returns: Where each was stored, in order.
        func send(_ messages: [OutgoingMessage]) async throws -> [MessagePosition] {
            let results = await producer.sendBatch(messages)
            return try results.map { try $0.get() }
        }

        /// The offsets `groupID` has committed in `agentjobs.run-events` (partitions without a commit left out).
        func committed(_ groupID: String) async throws -> [TopicPartition: Int64] {
            var offsets: [TopicPartition: Int64] = [:]
            for partition in 0..<partitions {
                let topicPartition = TopicPartition(topic: Topic.runEvents, partition: partition)
                if let offset = try await log.committedOffset(groupID: groupID, topicPartition: topicPartition) {
                    offsets[topicPartition] = offset
                }
            }
            return offsets
        }

        func observedStore(group: String) -> ObservedStore {
            ObservedStore(store) { try await self.committed(group) }
        }

        func observedProducer(group: String) -> ObservedProducer {
            ObservedProducer(producer) { try await self.committed(group) }
        }

        /// Starts an aggregator replica (its consumer of `agentjobs.run-events` in `group`, and the
        /// aggregator), composed as the binary composes them.
        func startAggregator(store: any RunEventStore, producer: any MessageProducer, group: String)
            -> RunningAggregator
        {
            let consumer = SQLiteMessageConsumer(
                log: log,
                configuration: SQLiteMessageConsumerConfiguration(
                    subscription: .group(id: group, topics: [Topic.runEvents])),
                logger: testLogger("aggregator-consumer"))
            let aggregator = StatusAggregator(
                store: store, consumer: consumer, producer: producer, logger: testLogger("aggregator"))
            // Graceful shutdown runs in reverse: the consumer stops first, then the aggregator.
            let serviceGroup = ServiceGroup(services: [aggregator, consumer], logger: testLogger("aggregator-group"))
            let running = RunningAggregator(group: serviceGroup, task: Task { try await serviceGroup.run() })
            started.withLock { $0.append(running) }
            return running
        }

        /// The messages of the partitions of `positions`, from the start of each through the last of
        /// `positions` in it, read back from the log.
        /// - Throws: ``TimeoutError`` when they cannot all be read within 10 s.
        func read(through positions: [MessagePosition]) async throws -> [IncomingMessage] {
            var last: [TopicPartition: Int64] = [:]
            for position in positions {
                last[position.topicPartition] = max(last[position.topicPartition] ?? -1, position.offset)
            }
            guard !last.isEmpty else { return [] }
            let consumer = SQLiteMessageConsumer(
                log: log,
                configuration: SQLiteMessageConsumerConfiguration(
                    subscription: .assignment(groupID: "check-\(UUID())", partitions: Array(last.keys))),
                logger: testLogger("check"))
            let reading = Task { try await consumer.run() }
            // Stopping the consumer ends `messages`, should the log never yield everything.
            let watchdog = Task {
                try await Task.sleep(for: .seconds(10))
                reading.cancel()
            }
            var found: [IncomingMessage] = []
            var remaining = last
            do {
                for try await message in consumer.messages {
                    let partition = message.position.topicPartition
                    if let end = last[partition], message.offset <= end { found.append(message) }
                    if let end = remaining[partition], message.offset >= end { remaining[partition] = nil }
                    if remaining.isEmpty { break }
                }
            } catch {
                watchdog.cancel()
                reading.cancel()
                _ = await reading.result
                throw error
            }
            watchdog.cancel()
            reading.cancel()
            _ = await reading.result
            guard remaining.isEmpty else { throw TimeoutError(what: "reading \(remaining) back from the log") }
            return found
        }

        /// Stops every aggregator still running, then closes the log and the store and removes the files.
        func close() async {
            for running in started.withLock({ $0 }) { try? await running.stop() }
            await log.close()
            await store.close()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// An aggregator replica and its consumer, running in a service group.
    final class RunningAggregator: Sendable {
        let group: ServiceGroup
        let task: Task<Void, any Error>

        init(group: ServiceGroup, task: Task<Void, any Error>) {
            self.group = group
            self.task = task
        }

        /// Stops the replica as SIGTERM would and waits until it has stopped.
        /// - Throws: What the service group threw; ``TimeoutError`` when it had not stopped after 15 s
        ///   (it is then cancelled).
        func stop() async throws {
            await group.triggerGracefulShutdown()
            let task = self.task
            let watchdog = Task {
                try await Task.sleep(for: .seconds(15))
                task.cancel()
            }
            let result = await task.result
            watchdog.cancel()
            if (try? await watchdog.value) != nil { throw TimeoutError(what: "the aggregator's graceful stop") }
            try result.get()
        }
    }

    // MARK: Watched store and producer

    /// The real store, watched (each transaction's events and outcomes, with the committed offsets
    /// just before it), behind a switch that makes it unavailable as a database outage would.
    final class ObservedStore: RunEventStore {
        enum Availability: Sendable {
            case available
            /// Every call fails, reading a host's key included.
            case unavailable
            /// Reads succeed; the transaction applying events fails.
            case transactionsFail
        }

        struct Transaction: Sendable {
            var events: [RunLifecycleEvent]
            var outcomes: [RunEventOutcome]
            /// The aggregator group's committed offsets just before the transaction.
            var committedBefore: [TopicPartition: Int64]
        }

        struct Tally: Sendable {
            var failedLookups = 0
            var failedHeartbeats = 0
            var failedTransactions = 0
            /// The transactions that succeeded, in order.
            var transactions: [Transaction] = []
        }

        let availability = Mutex(Availability.available)
        private let tally = Mutex(Tally())
        private let base: SQLiteStore
        private let committed: @Sendable () async throws -> [TopicPartition: Int64]

        init(_ base: SQLiteStore, committed: @escaping @Sendable () async throws -> [TopicPartition: Int64]) {
            self.base = base
            self.committed = committed
        }

        var snapshot: Tally { tally.withLock { $0 } }

        private static var outage: StoreError {
            StoreError(.unavailable, "the database cannot be reached (test outage)")
        }

        func hostCredentialHash(hostId: String) async throws -> String? {
            if availability.withLock({ $0 == .unavailable }) {
                tally.withLock { $0.failedLookups += 1 }
                throw Self.outage
            }
            return try await base.hostCredentialHash(hostId: hostId)
        }

        func applyRunEvents(_ events: [RunLifecycleEvent], now: Date) async throws -> [RunEventOutcome] {
            if availability.withLock({ $0 != .available }) {
                tally.withLock { $0.failedTransactions += 1 }
                throw Self.outage
            }
            let before = try await committed()
            let outcomes = try await base.applyRunEvents(events, now: now)
            tally.withLock {
                $0.transactions.append(Transaction(events: events, outcomes: outcomes, committedBefore: before))
            }
            return outcomes
        }

        func recordHeartbeats(_ heartbeats: [ReceivedHeartbeat]) async throws -> [String: [String]] {
            if availability.withLock({ $0 == .unavailable }) {
                tally.withLock { $0.failedHeartbeats += 1 }
                throw Self.outage
            }
            return try await base.recordHeartbeats(heartbeats)
        }

        func recordTrackingProbe(
            partition: Int32, trackerId: String, sentAt: Date, readAt: Date, maxDelay: Duration
        ) async throws -> HostTrackingWatermark {
            try await base.recordTrackingProbe(
                partition: partition, trackerId: trackerId, sentAt: sentAt, readAt: readAt, maxDelay: maxDelay)
        }

        func hostTrackingWatermarks() async throws -> [Int32: HostTrackingWatermark] {
            try await base.hostTrackingWatermarks()
        }

        func hostsNotHeard(since cutoff: Date) async throws -> [AgentJobsCore.Host] {
            try await base.hostsNotHeard(since: cutoff)
        }

        func hostCount() async throws -> Int { try await base.hostCount() }

        func closeRunsOfOfflineHosts(_ offline: [String: Date], lost: Set<String>, now: Date) async throws
            -> ExpiredRuns
        {
            try await base.closeRunsOfOfflineHosts(offline, lost: lost, now: now)
        }

        func trackingProbeSecret() async throws -> String {
            try await base.trackingProbeSecret()
        }
    }

    /// The real producer, watched (each publish, where it was stored, and the aggregator group's
    /// committed offsets just before it), behind a switch that fails every send as a transport
    /// outage would (nothing is stored then).
    final class ObservedProducer: MessageProducer {
        struct Publish: Sendable {
            var messages: [OutgoingMessage]
            var positions: [MessagePosition]
            /// The aggregator group's committed offsets just before the messages were sent.
            var committedBefore: [TopicPartition: Int64]
        }

        struct Tally: Sendable {
            var failedAttempts = 0
            /// The publishes that were stored, in order.
            var publishes: [Publish] = []
        }

        struct TransportDown: Error, CustomStringConvertible {
            var description: String { "the transport cannot be reached (test outage)" }
        }

        let failing = Mutex(false)
        private let tally = Mutex(Tally())
        private let base: SQLiteMessageProducer
        private let committed: @Sendable () async throws -> [TopicPartition: Int64]

        init(_ base: SQLiteMessageProducer, committed: @escaping @Sendable () async throws -> [TopicPartition: Int64]) {
            self.base = base
            self.committed = committed
        }

        var snapshot: Tally { tally.withLock { $0 } }

        func send(_ message: OutgoingMessage) async throws -> MessagePosition {
            let results = await sendBatch([message])
            return try results[0].get()
        }

        func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
            if failing.withLock({ $0 }) {
                tally.withLock { $0.failedAttempts += 1 }
                return messages.map { _ -> Result<MessagePosition, any Error> in .failure(TransportDown()) }
            }
            let before: [TopicPartition: Int64]
            do {
                before = try await committed()
            } catch {
                return messages.map { _ -> Result<MessagePosition, any Error> in .failure(error) }
            }
            let results = await base.sendBatch(messages)
            let positions = results.compactMap { try? $0.get() }
            if positions.count == messages.count {
                tally.withLock {
                    $0.publishes.append(Publish(messages: messages, positions: positions, committedBefore: before))
                }
            }
            return results
        }
    }
}
