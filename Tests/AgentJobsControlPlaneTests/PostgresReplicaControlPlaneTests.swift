import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsPostgres
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// What several `serve` replicas on one PostgreSQL database do together: divide the outbox by
/// shard leases, hand a silent replica's shards over, and fire each schedule occurrence once.
@Suite(
    "Control-plane replicas on PostgreSQL", .serialized,
    .enabled(if: RequiredService.postgres.shouldRun, RequiredService.postgres.skipReason))
struct PostgresReplicaControlPlaneTests {
    /// `count` stores on one fresh database.
    static func replicas(_ count: Int) async throws -> (stores: [PostgresStore], drop: @Sendable () async -> Void) {
        let (_, configuration, drop) = try await TestPostgres.freshDatabase()
        var stores: [PostgresStore] = []
        for _ in 0..<count {
            stores.append(try await PostgresStore.connect(configuration, logger: TestPostgres.logger))
        }
        return (stores, drop)
    }

    /// Registers `hosts` hosts with `jobs` jobs each and triggers one run of every job.
    /// - Returns: The host ids.
    @discardableResult
    static func trigger(hosts: Int, jobs: Int = 1, on store: any Store, prefix: String = "h") async throws -> [String] {
        let now = Date()
        var ids: [String] = []
        for index in 0..<hosts {
            let (_, registration) = try await store.createRegistrationToken(
                expiresAt: now.addingTimeInterval(60), now: now)
            let host = try await store.registerHost(
                registrationTokenHash: registration.hash, name: "\(prefix)\(index)", managedAgents: [.datahealth],
                credential: Secret.generate(prefix: "ajh"), now: now)
            for number in 0..<jobs {
                let job = try await store.createJob(
                    JobDefinition(
                        name: "j\(number)", hostId: host.id, agentType: .datahealth, parameters: .file(fileName: "f")),
                    now: now)
                _ = try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: now)
            }
            ids.append(host.id)
        }
        return ids
    }

    static func held(_ lease: OutboxLease) -> Set<Int> {
        if case .only(let shards) = lease.shards { return shards }
        return Set(0..<OutboxShards.count)
    }

    @Test("a host's outbox rows are all in one shard, and the shards together hold every row once")
    func rowsDividedByKey() async throws {
        let (stores, drop) = try await Self.replicas(1)
        let store = stores[0]
        try await Self.trigger(hosts: 40, jobs: 2, on: store)
        var shardOfKey: [String: Int] = [:]
        var seen: [Int64] = []
        for shard in 0..<OutboxShards.count {
            for row in try await store.pendingOutbox(after: 0, limit: 1000, shards: .only([shard])) {
                let earlier = shardOfKey.updateValue(shard, forKey: row.key)
                #expect(earlier == nil || earlier == shard, "\(row.key) in two shards")
                seen.append(row.sequence)
            }
        }
        let all = try await store.pendingOutbox(limit: 1000).map(\.sequence)
        #expect(all.count == 80)
        #expect(seen.sorted() == all.sorted())
        #expect(Set(shardOfKey.values).count > 10, "40 hosts should spread over many of the 32 shards")
        await store.close()
        await drop()
    }

    @Test(
        "leases: a lone replica takes every shard, a second one gets half a second after the first renews, a release hands over at once"
    )
    func leasesShareAndHandOver() async throws {
        let (stores, drop) = try await Self.replicas(2)
        let (a, b) = (stores[0], stores[1])
        // Long leases: only the hand-over of shards beyond a replica's share (1 s) is waited for.
        let duration: Duration = .seconds(60)
        let first = try await a.leaseOutboxShards(replica: "a", duration: duration)
        #expect(Self.held(first) == Set(0..<32))
        #expect(first.replicas == 1)
        let none = try await b.leaseOutboxShards(replica: "b", duration: duration)
        #expect(Self.held(none).isEmpty, "every shard is still leased to a")
        #expect(none.replicas == 2)
        let halved = try await a.leaseOutboxShards(replica: "a", duration: duration)
        #expect(Self.held(halved) == Set(0..<16), "a keeps its share, the lowest shards, and ends the others' leases")
        try await Task.sleep(for: .milliseconds(1500))
        let claimed = try await b.leaseOutboxShards(replica: "b", duration: duration)
        #expect(Self.held(claimed) == Set(16..<32))
        #expect(Self.held(try await a.leaseOutboxShards(replica: "a", duration: duration)) == Set(0..<16))
        #expect(Self.held(try await b.leaseOutboxShards(replica: "b", duration: duration)) == Set(16..<32))

        try await a.releaseOutboxShards(replica: "a")
        let everything = try await b.leaseOutboxShards(replica: "b", duration: duration)
        #expect(Self.held(everything) == Set(0..<32), "a released its shards and its place")
        #expect(everything.replicas == 1)
        for store in stores { await store.close() }
        await drop()
    }

    @Test("a relay whose leases cannot be renewed stops publishing when they run out, and resumes once it can renew")
    func relayStopsWithoutLease() async throws {
        let (_, configuration, drop) = try await TestPostgres.freshDatabase()
        let store = try await PostgresStore.connect(configuration, logger: TestPostgres.logger)
        let producer = RecordingProducer()
        let relay = OutboxRelay(
            store: store, producer: producer, signingKey: DispatchSigningKey(), replica: "r",
            logger: TestPostgres.logger)
        try await Self.running([relay]) {
            try await Self.trigger(hosts: 5, on: store)
            try await waitUntil("the relays publish", within: .seconds(10)) { producer.runIds.count == 5 }
            // Renewals now fail (the lease table is gone); the lease granted last runs out within 5 s.
            try await PostgresStore.execute(
                "ALTER TABLE outbox_shard_leases RENAME TO outbox_shard_leases_away", on: configuration,
                logger: TestPostgres.logger)
            try await Task.sleep(for: .seconds(6))
            try await Self.trigger(hosts: 5, on: store, prefix: "unleased")
            try await Task.sleep(for: .seconds(3))
            #expect(producer.runIds.count == 5, "published without a lease")
            try await PostgresStore.execute(
                "ALTER TABLE outbox_shard_leases_away RENAME TO outbox_shard_leases", on: configuration,
                logger: TestPostgres.logger)
            try await waitUntil("the relays publish", within: .seconds(10)) { producer.runIds.count == 10 }
        }
        await store.close()
        await drop()
    }

    /// Acknowledges every message and records the run ids it was given, in order.
    final class RecordingProducer: MessageProducer, Sendable {
        let published = Mutex<[String]>([])

        func send(_ message: OutgoingMessage) async throws -> MessagePosition {
            try await sendBatch([message])[0].get()
        }

        func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
            messages.map { message in
                let subject = message.headers.first { $0.key == WireHeader.subject }?.stringValue ?? ""
                published.withLock { $0.append(subject) }
                return .success(MessagePosition(topic: message.topic, partition: 0, offset: 0))
            }
        }

        var runIds: [String] { published.withLock { $0 } }
    }

    /// Runs `relays` (each with its own producer) in a service group until `body` returns.
    static func running(
        _ relays: [OutboxRelay], _ body: () async throws -> Void
    ) async throws {
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: relays.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                logger: Logger(label: "test")))
        let task = Task { try await group.run() }
        do {
            try await body()
        } catch {
            await group.triggerGracefulShutdown()
            _ = await task.result
            throw error
        }
        await group.triggerGracefulShutdown()
        try await task.value
    }

    @Test(
        "two relays with the default lease settings publish each row once, and a replica that goes silent loses its shards within 10 s"
    )
    func twoRelaysDivideAndFailOver() async throws {
        let (stores, drop) = try await Self.replicas(2)
        let producers = [RecordingProducer(), RecordingProducer()]
        let relays = (0..<2).map { index in
            OutboxRelay(
                store: stores[index], producer: producers[index], signingKey: DispatchSigningKey(),
                replica: "relay-\(index)", logger: TestPostgres.logger)
        }
        try await Self.running(relays) {
            // Steady state: after one lease (6 s) and a renewal (2 s), each relay holds its share.
            try await Task.sleep(for: .seconds(9))
            let triggered = Set(try await Self.trigger(hosts: 60, on: stores[0]))
            #expect(triggered.count == 60)
            try await waitUntil("the relays publish", within: .seconds(10)) {
                producers[0].runIds.count + producers[1].runIds.count >= 60
            }
            try await Task.sleep(for: .milliseconds(500))
            let published = producers[0].runIds + producers[1].runIds
            #expect(published.count == 60, "no row published twice in steady state")
            #expect(Set(published).count == 60)
            #expect(!producers[0].runIds.isEmpty && !producers[1].runIds.isEmpty, "both relays publish")
        }
        #expect(try await stores[0].pendingOutbox(limit: 10).isEmpty)

        // A replica that stops renewing without releasing (kill -9): "ghost" takes every shard, then
        // falls silent. A relay with the default settings publishes the rows within 10 s.
        let ghost = try await stores[0].leaseOutboxShards(replica: "ghost", duration: .seconds(6))
        #expect(Self.held(ghost).count == 32)
        let silentSince = ContinuousClock.now
        try await Self.trigger(hosts: 20, on: stores[0], prefix: "late")
        let survivor = RecordingProducer()
        let relay = OutboxRelay(
            store: stores[1], producer: survivor, signingKey: DispatchSigningKey(), replica: "survivor",
            logger: TestPostgres.logger)
        try await Self.running([relay]) {
            try await waitUntil("the relays publish", within: .seconds(15)) { survivor.runIds.count >= 20 }
        }
        let failover = ContinuousClock.now - silentSince
        print("relay failover after a silent replica: \(failover)")
        #expect(failover < .seconds(10))
        #expect(failover > .seconds(5), "the ghost's leases held until they expired")
        for store in stores { await store.close() }
        await drop()
    }

    @Test("two scheduler replicas ticking together fire 500 every-minute jobs exactly once per minute for 5 minutes")
    func schedulersFireOnce() async throws {
        let (stores, drop) = try await Self.replicas(2)
        let start = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60)
        let (_, registration) = try await stores[0].createRegistrationToken(
            expiresAt: start.addingTimeInterval(60), now: start)
        let host = try await stores[0].registerHost(
            registrationTokenHash: registration.hash, name: "h", managedAgents: [.datahealth],
            credential: Secret.generate(prefix: "ajh"), now: start)
        var jobs: [String] = []
        for index in 0..<500 {
            let job = try await stores[0].createJob(
                JobDefinition(
                    name: "every-minute-\(index)", hostId: host.id, agentType: .datahealth,
                    parameters: .file(fileName: "f"), schedule: JobSchedule(cron: "* * * * *")),
                now: start)
            jobs.append(job.id)
        }
        let schedulers = stores.map { Scheduler(store: $0, logger: TestPostgres.logger) }
        var recorded = 0
        for minute in 1...5 {
            // Both replicas tick several times within the minute, at the same instants.
            for second in [0, 1, 30] {
                let now = start.addingTimeInterval(Double(minute * 60 + second))
                async let first = schedulers[0].tick(now: now)
                async let second = schedulers[1].tick(now: now)
                recorded += try await first.count + second.count
            }
            // Every run ends before the next minute, so no occurrence is skipped for a busy job.
            let queued = try await stores[0].listRuns(RunFilter(status: .queued), cursor: nil, limit: 1000).runs
            let ended = start.addingTimeInterval(Double(minute * 60 + 40))
            for run in queued { _ = try await stores[minute % 2].requestCancel(runId: run.id, now: ended) }
        }
        #expect(recorded == 2_500)
        var scheduled = 0
        var cursor: String?
        repeat {
            let page = try await stores[1].listRuns(RunFilter(), cursor: cursor, limit: 500)
            scheduled += page.runs.filter { $0.trigger == .schedule }.count
            cursor = page.nextCursor
        } while cursor != nil
        #expect(scheduled == 2_500)
        for job in jobs.prefix(20) {
            let occurrences = try await stores[0].scheduleOccurrences(jobId: job, limit: 10)
            #expect(occurrences.count == 5)
            #expect(occurrences.allSatisfy { $0.outcome == .started })
        }
        for store in stores { await store.close() }
        await drop()
    }
}
