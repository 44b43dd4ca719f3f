import AgentJobsCore
import Foundation
import Testing

/// "Host lost" as a value rule: decided on evidence about the host, never on tracking's own gaps.
@Suite("Host liveness")
struct HostLivenessTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let grace = Duration.seconds(30)

    func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    /// Probes every 2 s from `start` to `end`, each read back `delay` seconds after it was sent.
    func tracked(from start: Double, to end: Double, delay: Double = 0.1, after current: HostTrackingWatermark? = nil)
        -> HostTrackingWatermark?
    {
        var watermark = current
        var sent = start
        while sent <= end {
            watermark = HostTrackingWatermark.advanced(
                watermark, partition: 0, trackerId: "t1", probeSentAt: at(sent), readAt: at(sent + delay),
                maxDelay: .seconds(10))
            sent += 2
        }
        return watermark
    }

    @Test("a host heard within the grace is online, whatever tracking knows")
    func recentlyHeardIsOnline() {
        let liveness = HostLiveness.judge(
            lastHeard: at(100), registeredAt: t0, watermark: nil, now: at(125), grace: grace)
        #expect(liveness == .online)
    }

    @Test("a host silent for longer than the grace while tracking read on without a break is offline")
    func silentUnderTrackingIsOffline() {
        let watermark = tracked(from: 0, to: 140)
        #expect(
            HostLiveness.judge(lastHeard: at(100), registeredAt: t0, watermark: watermark, now: at(141), grace: grace)
                == .offline(silentSince: at(100)))
    }

    @Test("after tracking stopped and resumed, a host silent all along gets a fresh grace from the resumption")
    func trackingGapGivesAFreshGrace() {
        // Tracking reads until 100, stops (tracker killed, broker out) and resumes at 160.
        let before = tracked(from: 0, to: 100)
        let resumed = tracked(from: 160, to: 180, after: before)
        #expect(resumed?.since == at(160.1))
        let early = HostLiveness.judge(
            lastHeard: at(90), registeredAt: t0, watermark: resumed, now: at(181), grace: grace)
        guard case .unknown(let reason) = early else {
            Issue.record("expected unknown, got \(early)")
            return
        }
        #expect(reason.contains("resumed"))
        // A full grace of tracking later, the host is lost.
        let later = tracked(from: 182, to: 196, after: resumed)
        #expect(
            HostLiveness.judge(lastHeard: at(90), registeredAt: t0, watermark: later, now: at(197), grace: grace)
                == .offline(silentSince: at(90)))
    }

    @Test("probes read back late (a backlog: a restart, a rebalance, a database outage) restart the stretch")
    func lateProbesRestartTheStretch() {
        let before = tracked(from: 0, to: 100)
        // Probes sent from 102 on are read only from 170 on, in a burst.
        var watermark = before
        for sent in stride(from: 102.0, through: 168, by: 2) {
            watermark = HostTrackingWatermark.advanced(
                watermark, partition: 0, trackerId: "t1", probeSentAt: at(sent), readAt: at(170), maxDelay: .seconds(10)
            )
        }
        #expect(watermark?.since == at(170))
        #expect(watermark?.readThrough == at(168))
        let liveness = HostLiveness.judge(
            lastHeard: at(99), registeredAt: t0, watermark: watermark, now: at(170), grace: grace)
        #expect(liveness.status == .unknown)
    }

    @Test("tracking that fell behind says so and declares nobody lost")
    func behindTrackingIsUnknown() {
        let watermark = tracked(from: 0, to: 100)
        let liveness = HostLiveness.judge(
            lastHeard: at(80), registeredAt: t0, watermark: watermark, now: at(300), grace: grace)
        guard case .unknown(let reason) = liveness else {
            Issue.record("expected unknown, got \(liveness)")
            return
        }
        #expect(reason.contains("behind"))
    }

    @Test("a probe a little older than the newest read moves nothing back")
    func olderProbeMovesNothingBack() {
        let watermark = tracked(from: 0, to: 100)
        let after = HostTrackingWatermark.advanced(
            watermark, partition: 0, trackerId: "t1", probeSentAt: at(99), readAt: at(100.5), maxDelay: .seconds(10))
        #expect(after == watermark)
    }

    @Test("another replica (another clock), or a clock that went backwards, starts tracking again")
    func replicaChangeOrClockStepRestarts() {
        let watermark = tracked(from: 0, to: 100)
        // A replica whose clock runs 40 s ahead takes the partition over: its times never mix with
        // the other's, so it cannot claim more than a grace of evidence at once.
        let other = HostTrackingWatermark.advanced(
            watermark, partition: 0, trackerId: "t2", probeSentAt: at(142), readAt: at(142.1), maxDelay: .seconds(10))
        #expect(other == HostTrackingWatermark(partition: 0, since: at(142.1), readThrough: at(142), trackerId: "t2"))
        #expect(
            HostLiveness.judge(lastHeard: at(100), registeredAt: t0, watermark: other, now: at(142.2), grace: grace)
                .status == .unknown)
        // The same replica's clock stepped back by a minute.
        let stepped = HostTrackingWatermark.advanced(
            watermark, partition: 0, trackerId: "t1", probeSentAt: at(40), readAt: at(40.1), maxDelay: .seconds(10))
        #expect(stepped.since == at(40.1))
    }

    @Test("a host never heard from is judged from its registration, on the same evidence")
    func neverHeardCountsFromRegistration() {
        let watermark = tracked(from: 0, to: 140)
        #expect(
            HostLiveness.judge(lastHeard: nil, registeredAt: at(50), watermark: watermark, now: at(141), grace: grace)
                == .offline(silentSince: at(50)))
        // Without the evidence it is shown offline ("never heard from"), and nothing is given up.
        #expect(
            HostLiveness.judge(lastHeard: nil, registeredAt: at(120), watermark: watermark, now: at(141), grace: grace)
                == .neverHeard)
        #expect(HostLiveness.neverHeard.status == .offline)
        #expect(
            HostLiveness.judge(lastHeard: nil, registeredAt: at(120), watermark: nil, now: at(121), grace: grace)
                == .neverHeard)
    }
}

@Suite("Runs of an offline host")
struct OfflineHostRunTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func run(_ status: RunStatus, queuedSecondsAgo: Double = 10, cancel: Bool = false) -> Run {
        var run = Run(
            id: "run_1", jobId: "job_1", jobName: "nightly", jobVersion: 1, hostId: "host_1", agentType: .datahealth,
            parameters: .file(fileName: "a.csv"), timeoutSeconds: 60, queueTimeoutSeconds: 600, trigger: .manual,
            queuedAt: now.addingTimeInterval(-queuedSecondsAgo))
        run.status = status
        if cancel { run.cancelRequestedAt = now.addingTimeInterval(-1) }
        return run
    }

    @Test(
        "running fails with host lost once the host is lost; a queued cancel is canceled at once; queued waits for its deadline"
    )
    func outcomes() {
        let silentSince = now.addingTimeInterval(-40)
        // Offline, but not lost yet: the agent may still be running (an orchestrator restart).
        #expect(run(.running).outcomeWhenHostOffline(silentSince: silentSince, hostLost: false, now: now) == nil)
        guard
            case .failed(_, nil, let summary) = run(.running).outcomeWhenHostOffline(
                silentSince: silentSince, hostLost: true, now: now)
        else {
            Issue.record("a running run must fail")
            return
        }
        #expect(summary?.hasPrefix("host lost") == true)
        guard
            case .canceled(_, let reason) = run(.queued, cancel: true).outcomeWhenHostOffline(
                silentSince: silentSince, hostLost: true, now: now)
        else {
            Issue.record("a queued run with a cancel must be canceled")
            return
        }
        #expect(reason?.contains("never launched") == true)
        #expect(run(.queued).outcomeWhenHostOffline(silentSince: silentSince, hostLost: true, now: now) == nil)
        guard
            case .timedOut = run(.queued, queuedSecondsAgo: 700).outcomeWhenHostOffline(
                silentSince: silentSince, hostLost: true, now: now)
        else {
            Issue.record("a queued run past its deadline must time out")
            return
        }
        #expect(run(.succeeded).outcomeWhenHostOffline(silentSince: silentSince, hostLost: true, now: now) == nil)
    }

    @Test("a cancel that outlives the queue deadline closes the run canceled, never timed out")
    func cancelPastDeadline() {
        #expect(run(.queued, queuedSecondsAgo: 599, cancel: true).outcomeOfCancelPastQueueDeadline(now: now) == nil)
        guard
            case .canceled = run(.queued, queuedSecondsAgo: 601, cancel: true).outcomeOfCancelPastQueueDeadline(
                now: now)
        else {
            Issue.record("expected canceled")
            return
        }
        #expect(run(.queued, queuedSecondsAgo: 601).outcomeOfCancelPastQueueDeadline(now: now) == nil)
        #expect(run(.running, queuedSecondsAgo: 601, cancel: true).outcomeOfCancelPastQueueDeadline(now: now) == nil)
    }
}
