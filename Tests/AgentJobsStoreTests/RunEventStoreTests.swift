import AgentJobsCore
import AgentJobsStore
import Foundation
import Testing

@Suite("Store conformance: run events and host liveness")
struct RunEventStoreTests {
    static func event(_ type: RunEventType, _ run: Run, sequence: Int, at: Date, host: String? = nil, epoch: Int? = nil)
        -> RunLifecycleEvent
    {
        RunLifecycleEvent(
            type: type, runId: run.id, jobId: run.jobId, hostId: host ?? run.hostId,
            dispatchEpoch: epoch ?? run.dispatchEpoch,
            sequence: sequence, at: at, exitCode: type == .failed ? 3 : (type == .succeeded ? 0 : nil),
            errorSummary: type == .failed ? "conn-a: boom" : nil)
    }

    @Test(
        "events apply through the state machine; duplicates, replays and late events change nothing",
        arguments: StoreKind.allCases)
    func idempotentApplication(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let run = try await store.triggerRun(
            jobId: try await fixture.job().id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        let t = fixture.now
        let started = Self.event(.started, run, sequence: 2, at: t.addingTimeInterval(1))
        let failed = Self.event(.failed, run, sequence: 3, at: t.addingTimeInterval(5))
        let outcomes = try await store.applyRunEvents(
            [Self.event(.accepted, run, sequence: 1, at: t), started, started, failed, started, failed], now: t)
        guard case .ignored = outcomes[0], case .applied(let running) = outcomes[1], case .ignored = outcomes[2],
            case .applied(let ended) = outcomes[3], case .ignored = outcomes[4], case .ignored = outcomes[5]
        else {
            Issue.record("unexpected outcomes \(outcomes)")
            return
        }
        #expect(running.status == .running)
        #expect(ended.status == .failed)
        let stored = try #require(try await store.run(id: run.id))
        #expect(stored.status == .failed)
        #expect(stored.startedAt == t.addingTimeInterval(1))
        #expect(stored.finishedAt == t.addingTimeInterval(5))
        #expect(stored.exitCode == 3)
        #expect(stored.errorSummary == "conn-a: boom")
        // The job can run again once the run ended.
        _ = try await store.triggerRun(jobId: run.jobId, trigger: .manual, scheduledAt: nil, now: t)
    }

    @Test("a batch over hundreds of runs applies every event, each run's in order", arguments: StoreKind.allCases)
    func largeBatch(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        var runs: [Run] = []
        for index in 0..<257 {
            let job = try await fixture.job("job \(index)", agentType: index % 2 == 0 ? .datahealth : .lineagePlus)
            runs.append(try await store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: fixture.now))
        }
        let t = fixture.now
        // Odd runs fail, even runs succeed; every run's start comes first.
        let events =
            runs.map { Self.event(.started, $0, sequence: 2, at: t.addingTimeInterval(1)) }
            + runs.enumerated().map { index, run in
                Self.event(index % 2 == 0 ? .succeeded : .failed, run, sequence: 3, at: t.addingTimeInterval(2))
            }
        let outcomes = try await store.applyRunEvents(events, now: t)
        #expect(outcomes.count == events.count)
        #expect(outcomes.allSatisfy { if case .applied = $0 { true } else { false } })
        for (index, run) in runs.enumerated() {
            let stored = try #require(try await store.run(id: run.id))
            #expect(stored.status == (index % 2 == 0 ? .succeeded : .failed))
            #expect(stored.startedAt == t.addingTimeInterval(1))
            #expect(stored.parameters == run.parameters)
        }
    }

    @Test(
        "events from another host, for unknown runs or for an older dispatch epoch are not applied",
        arguments: StoreKind.allCases)
    func untrustedEvents(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let run = try await store.triggerRun(
            jobId: try await fixture.job().id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        var unknown = Self.event(.started, run, sequence: 1, at: fixture.now)
        unknown.runId = "run_doesnotexist"
        let outcomes = try await store.applyRunEvents(
            [
                Self.event(.succeeded, run, sequence: 1, at: fixture.now, host: "host_other"), unknown,
                Self.event(.succeeded, run, sequence: 1, at: fixture.now, epoch: run.dispatchEpoch + 1),
            ], now: fixture.now)
        #expect(outcomes[0] == .wrongHost(expected: fixture.host.id))
        #expect(outcomes[1] == .unknownRun)
        guard case .ignored = outcomes[2] else {
            Issue.record("stale epoch applied: \(outcomes[2])")
            return
        }
        #expect(try await store.run(id: run.id)?.status == .queued)
    }

    @Test("a host that starts a run the control plane already closed is told to stop it", arguments: StoreKind.allCases)
    func startedAfterClose(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let run = try await store.triggerRun(
            jobId: try await fixture.job().id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        // Dispatch relayed, then canceled by the backstop path: simulate with a timed-out event.
        try await store.markOutboxSent(sequences: try await store.pendingOutbox(limit: 10).map(\.sequence))
        _ = try await store.applyRunEvents([Self.event(.timedOut, run, sequence: 1, at: fixture.now)], now: fixture.now)
        let outcomes = try await store.applyRunEvents(
            [Self.event(.started, run, sequence: 2, at: fixture.now)], now: fixture.now)
        guard case .stopRequested(let closed) = outcomes[0] else {
            Issue.record("expected stopRequested, got \(outcomes)")
            return
        }
        #expect(closed.status == .timedOut)
        let pending = try await store.pendingOutbox(limit: 10)
        #expect(pending.map(\.type) == [RunCancel.type])
        #expect(pending.first?.key == fixture.host.id)
        #expect(pending.first?.runId == run.id)
    }

    @Test("heartbeats keep a host seen; runs it reports that are closed get a cancel", arguments: StoreKind.allCases)
    func heartbeats(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let run = try await store.triggerRun(
            jobId: try await fixture.job().id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        try await store.markOutboxSent(sequences: try await store.pendingOutbox(limit: 10).map(\.sequence))
        let seen = fixture.now.addingTimeInterval(10)
        // The host's clock is an hour ahead: it is seen when the heartbeat was received, and the skew
        // is only reported.
        let beat = HostHeartbeat(
            hostId: fixture.host.id, sentAt: seen.addingTimeInterval(3600), version: "1.2.3",
            managedAgents: [.datahealth],
            activeRuns: [
                .init(runId: run.id, dispatchEpoch: 1, status: .running),
                .init(runId: "run_waiting", dispatchEpoch: 1, status: .queued),
            ], driver: "process", maxConcurrentRuns: 1)
        #expect(try await store.recordHeartbeat(beat, partition: 2, receivedAt: seen).isEmpty)
        let host = try #require(try await store.host(id: fixture.host.id))
        // Its limit and the runs it had launched, so a queued run can say it waits for a slot.
        #expect(host.maxConcurrentRuns == 1 && host.runningRuns == 1 && host.isAtCapacity)
        #expect(host.lastSeenAt == seen)
        #expect(host.version == "1.2.3")
        #expect(host.heartbeatPartition == 2)
        #expect(host.clockSkewSeconds == 3600)

        _ = try await store.applyRunEvents([Self.event(.canceled, run, sequence: 1, at: seen)], now: seen)
        #expect(try await store.recordHeartbeat(beat, partition: 2, receivedAt: seen) == [run.id])
        #expect(try await store.pendingOutbox(limit: 10).map(\.type) == [RunCancel.type])
    }

    @Test(
        "heartbeats of many hosts are recorded in one call: the last of each host wins, and each host is told to stop only its own closed runs, once",
        arguments: StoreKind.allCases)
    func heartbeatBatch(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let (_, registration) = try await store.createRegistrationToken(
            expiresAt: fixture.now.addingTimeInterval(60), now: fixture.now)
        let other = try await store.registerHost(
            registrationTokenHash: registration.hash, name: "db-2", managedAgents: [.datahealth],
            credential: Secret.generate(prefix: "ajh"), now: fixture.now)
        let run = try await store.triggerRun(
            jobId: try await fixture.job().id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        try await store.markOutboxSent(sequences: try await store.pendingOutbox(limit: 10).map(\.sequence))
        _ = try await store.applyRunEvents([Self.event(.canceled, run, sequence: 1, at: fixture.now)], now: fixture.now)
        func beat(_ hostId: String, version: String, running: [String]) -> HostHeartbeat {
            HostHeartbeat(
                hostId: hostId, sentAt: fixture.now, version: version, managedAgents: [.datahealth],
                activeRuns: running.map { .init(runId: $0, dispatchEpoch: 1, status: .running) }, driver: "process")
        }
        let t1 = fixture.now.addingTimeInterval(1)
        let t2 = fixture.now.addingTimeInterval(2)
        let stopped = try await store.recordHeartbeats([
            ReceivedHeartbeat(beat(fixture.host.id, version: "1", running: [run.id]), partition: 0, receivedAt: t1),
            // Another host reporting the run is not its own: nothing to stop there.
            ReceivedHeartbeat(beat(other.id, version: "7", running: [run.id]), partition: 1, receivedAt: t1),
            ReceivedHeartbeat(beat(fixture.host.id, version: "2", running: [run.id]), partition: 0, receivedAt: t2),
        ])
        #expect(stopped == [fixture.host.id: [run.id]])
        #expect(try await store.pendingOutbox(limit: 10).map(\.type) == [RunCancel.type])
        let host = try #require(try await store.host(id: fixture.host.id))
        #expect(host.version == "2" && host.lastSeenAt == t2 && host.runningRuns == 1)
        let second = try #require(try await store.host(id: other.id))
        #expect(second.version == "7" && second.lastSeenAt == t1 && second.heartbeatPartition == 1)
        #expect(try await store.recordHeartbeats([]).isEmpty)
    }

    @Test(
        "runs of an offline host are closed: running → failed (host lost), queued with a cancel → canceled, queued past deadline → timed out",
        arguments: StoreKind.allCases)
    func offlineHosts(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let t = fixture.now
        let running = try await store.triggerRun(
            jobId: try await fixture.job("a").id, trigger: .manual, scheduledAt: nil, now: t)
        _ = try await store.applyRunEvents([Self.event(.started, running, sequence: 1, at: t)], now: t)
        let queued = try await store.triggerRun(
            jobId: try await fixture.job("b").id, trigger: .manual, scheduledAt: nil, now: t)
        let fresh = try await store.triggerRun(
            jobId: try await fixture.job("c").id, trigger: .manual, scheduledAt: nil, now: t.addingTimeInterval(3600))
        let canceling = try await store.triggerRun(
            jobId: try await fixture.job("d").id, trigger: .manual, scheduledAt: nil, now: t.addingTimeInterval(3600))
        // Dispatched (the relay sent it), so the cancel is a request the host must confirm.
        try await store.markOutboxSent(sequences: try await store.pendingOutbox(limit: 10).map(\.sequence))
        _ = try await store.requestCancel(runId: canceling.id, now: t.addingTimeInterval(3600))

        // No host is offline: nothing happens (the canceled run's queue deadline has not passed).
        #expect(
            try await store.closeRunsOfOfflineHosts([:], lost: [], now: t.addingTimeInterval(3601)) == ExpiredRuns())

        let later = t.addingTimeInterval(Double(queued.queueTimeoutSeconds) + 60)
        let expired = try await store.closeRunsOfOfflineHosts(
            [fixture.host.id: t], lost: [fixture.host.id], now: later)
        #expect(expired.lost.map(\.id) == [running.id])
        #expect(expired.timedOut.map(\.id) == [queued.id])
        #expect(expired.canceled.map(\.id) == [canceling.id])
        let lost = try #require(try await store.run(id: running.id))
        #expect(lost.status == .failed)
        #expect(lost.errorSummary?.hasPrefix("host lost") == true)
        #expect(try await store.run(id: queued.id)?.status == .timedOut)
        #expect(try await store.run(id: fresh.id)?.status == .queued)
        let canceled = try #require(try await store.run(id: canceling.id))
        #expect(canceled.status == .canceled)
        #expect(canceled.errorSummary?.contains("never launched") == true)
    }

    @Test(
        "a queued run whose cancel outlives its queue deadline is closed canceled, whatever its host",
        arguments: StoreKind.allCases)
    func cancelPastQueueDeadline(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let t = fixture.now
        let run = try await store.triggerRun(
            jobId: try await fixture.job().id, trigger: .manual, scheduledAt: nil, now: t)
        try await store.markOutboxSent(sequences: try await store.pendingOutbox(limit: 10).map(\.sequence))
        _ = try await store.requestCancel(runId: run.id, now: t)
        #expect(try await store.closeRunsOfOfflineHosts([:], lost: [], now: run.queueDeadline) == ExpiredRuns())
        let expired = try await store.closeRunsOfOfflineHosts(
            [:], lost: [], now: run.queueDeadline.addingTimeInterval(1))
        #expect(expired.canceled.map(\.id) == [run.id])
        #expect(try await store.run(id: run.id)?.status == .canceled)
    }

    @Test(
        "tracking probes advance a partition's watermark, and a late probe restarts its unbroken stretch",
        arguments: StoreKind.allCases)
    func trackingWatermarks(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let t = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(try await store.hostTrackingWatermarks().isEmpty)
        _ = try await store.recordTrackingProbe(
            partition: 1, trackerId: "t1", sentAt: t, readAt: t, maxDelay: .seconds(10))
        _ = try await store.recordTrackingProbe(
            partition: 1, trackerId: "t1", sentAt: t.addingTimeInterval(2), readAt: t.addingTimeInterval(2),
            maxDelay: .seconds(10))
        #expect(
            try await store.hostTrackingWatermarks()[1]
                == HostTrackingWatermark(partition: 1, since: t, readThrough: t.addingTimeInterval(2), trackerId: "t1"))
        let late = try await store.recordTrackingProbe(
            partition: 1, trackerId: "t1", sentAt: t.addingTimeInterval(4), readAt: t.addingTimeInterval(60),
            maxDelay: .seconds(10))
        #expect(
            late
                == HostTrackingWatermark(
                    partition: 1, since: t.addingTimeInterval(60), readThrough: t.addingTimeInterval(4), trackerId: "t1"
                ))
        #expect(try await store.hostTrackingWatermarks() == [1: late])
        // The probe secret is created once and shared.
        let secret = try await store.trackingProbeSecret()
        #expect(try await store.trackingProbeSecret() == secret)
        #expect(secret.count > 40)
    }
}
