#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// How far host tracking has read one partition of `agentjobs.host-events`.
///
/// Host tracking publishes a signed probe into every partition of the topic at a steady pace and
/// reads it back like any heartbeat. A probe read back promptly proves that every heartbeat published
/// to that partition before the probe was read too; a probe read late, or a gap between probes,
/// means tracking was behind (the tracker stopped, a rebalance, the broker or the database was out)
/// and the unbroken stretch of evidence starts again. "Host lost" is decided on this evidence only,
/// so a pause of the control plane's own tracking is never taken for silence of a host.
public struct HostTrackingWatermark: Sendable, Hashable, Codable {
    /// The partition of `agentjobs.host-events`.
    public var partition: Int32
    /// Start of the current unbroken stretch of tracking: probes read back promptly and without a gap.
    public var since: Date
    /// Every heartbeat published to the partition before this time has been processed.
    public var readThrough: Date
    /// The tracker replica whose own probes, sent and read on its own clock, give both times (and
    /// who received the partition's heartbeats meanwhile): a watermark never mixes two clocks.
    public var trackerId: String

    public init(partition: Int32, since: Date, readThrough: Date, trackerId: String = "") {
        self.partition = partition
        self.since = since
        self.readThrough = readThrough
        self.trackerId = trackerId
    }

    /// The watermark after a tracker replica read back one of its own probes.
    ///
    /// - Parameters:
    ///   - current: The partition's watermark so far, if any.
    ///   - partition: The partition the probe was read from.
    ///   - trackerId: The replica that sent and read the probe (one clock for both times).
    ///   - sentAt: When the probe was published.
    ///   - readAt: When it was processed.
    ///   - maxDelay: The longest a probe may take to be read back, and the longest gap between
    ///     consecutive probes, for tracking to count as unbroken.
    /// - Returns: The new watermark. Tracking starts again (`since` = `readAt`, `readThrough` =
    ///   `sentAt`) after a late probe, a gap, another replica, or a clock that went backwards;
    ///   otherwise `readThrough` moves forward.
    public static func advanced(
        _ current: HostTrackingWatermark?, partition: Int32, trackerId: String, probeSentAt sentAt: Date,
        readAt: Date, maxDelay: Duration
    ) -> HostTrackingWatermark {
        let limit = maxDelay.seconds
        let delay = readAt.timeIntervalSince(sentAt)
        let restart = HostTrackingWatermark(
            partition: partition, since: readAt, readThrough: sentAt, trackerId: trackerId)
        guard let current, current.trackerId == trackerId, delay <= limit, delay > -1,
            sentAt.timeIntervalSince(current.readThrough) <= limit, current.readThrough <= readAt
        else { return restart }
        return HostTrackingWatermark(
            partition: partition, since: current.since, readThrough: max(current.readThrough, sentAt),
            trackerId: trackerId)
    }
}

/// What the control plane knows about whether a host is alive.
public enum HostLiveness: Sendable, Hashable {
    /// Heard from within the grace period.
    case online
    /// Silent for longer than the grace period while tracking read its heartbeats without a break:
    /// the host is lost. `silentSince` is when it was last heard from (or registered).
    case offline(silentSince: Date)
    /// Not heard from within the grace, but the evidence is not there yet: tracking of its
    /// heartbeats is behind, or resumed less than a grace period ago. `reason` says which.
    case unknown(reason: String)
    /// Never heard from since it registered, and tracking cannot tell yet whether it should have
    /// been: shown offline ("never heard from"), but nothing is given up for it.
    case neverHeard

    /// The status shown for it.
    public var status: HostStatus {
        switch self {
        case .online: .online
        case .offline, .neverHeard: .offline
        case .unknown: .unknown
        }
    }

    /// Why the status is what it is, for `unknown`; `nil` otherwise.
    public var reason: String? {
        if case .unknown(let reason) = self { return reason }
        return nil
    }

    /// Judges a host's liveness.
    ///
    /// A host is online when heard from within `grace` of `now` (times are when heartbeats were
    /// received, never the host's own clock). It is offline only when tracking of its heartbeat
    /// partition has read, without a break, more than `grace` beyond the later of its last heartbeat
    /// and the start of that unbroken stretch: after any pause of tracking every host gets a fresh
    /// grace (as Nomad resets heartbeat timers on leader failover).
    /// - Parameters:
    ///   - lastHeard: When its last heartbeat was received; `nil` if never.
    ///   - registeredAt: When it registered: the last sign of life of a host never heard from.
    ///   - watermark: Tracking of its heartbeat partition, `nil` when none was read yet.
    ///   - now: The current time.
    ///   - grace: `AGENTJOBS_HOST_OFFLINE_GRACE_SECONDS`.
    ///   - maxDelay: How far behind `now` tracking may read before it counts as behind (for the reason).
    public static func judge(
        lastHeard: Date?, registeredAt: Date, watermark: HostTrackingWatermark?, now: Date, grace: Duration,
        maxDelay: Duration = .seconds(10)
    ) -> HostLiveness {
        if let lastHeard, now.timeIntervalSince(lastHeard) <= grace.seconds { return .online }
        let heard = lastHeard ?? registeredAt
        guard let watermark else {
            if lastHeard == nil { return .neverHeard }
            return .unknown(reason: "host tracking has not read this host's heartbeat partition yet")
        }
        let silentFrom = max(heard, watermark.since)
        if watermark.readThrough.timeIntervalSince(silentFrom) > grace.seconds {
            return .offline(silentSince: heard)
        }
        if lastHeard == nil { return .neverHeard }
        if watermark.readThrough.timeIntervalSince(watermark.since) <= grace.seconds {
            return .unknown(
                reason:
                    "host tracking resumed at \(ISO8601.format(watermark.since)); a silent host is declared offline only after a full grace period of tracking"
            )
        }
        if now.timeIntervalSince(watermark.readThrough) > maxDelay.seconds {
            return .unknown(
                reason:
                    "host tracking is behind: this host's heartbeats are read up to \(ISO8601.format(watermark.readThrough)) only"
            )
        }
        return .unknown(
            reason:
                "not heard from since \(ISO8601.format(heard)); declared offline once host tracking has read past the grace period"
        )
    }
}

extension Run {
    /// What the control plane records for this run when its host was declared offline (the
    /// backstop for hosts that went silent), or `nil` to leave it as it is.
    ///
    /// - A running run fails with "host lost" once the host is lost: silent, on the same evidence
    ///   as offline, for the longer lost-after time (so that an orchestrator restart or a short
    ///   network partition is ridden out: its agent keeps running and the host reports the real end).
    /// - A queued run with a cancel request is canceled: no host accepted it, and the user's cancel
    ///   wins over the queue deadline. The host, if it returns, finds the `RunCancel` behind the
    ///   dispatch in its partition and never launches it.
    /// - A queued run past its queue deadline times out; before the deadline it stays queued (the
    ///   host may return in time).
    /// - Parameters:
    ///   - silentSince: When the host was last heard from.
    ///   - hostLost: Whether the host has been judged silent for the lost-after time (``HostLiveness/judge``
    ///     with that time as the grace).
    ///   - now: The current time.
    public func outcomeWhenHostOffline(silentSince: Date, hostLost: Bool, now: Date) -> RunEvent? {
        switch status {
        case .running where hostLost:
            return .failed(
                at: now, exitCode: nil,
                errorSummary:
                    "host lost: no heartbeat from host \(hostId) since \(ISO8601.format(silentSince)); the run's outcome is unknown"
            )
        case .queued where cancelRequestedAt != nil:
            return .canceled(
                at: now,
                errorSummary:
                    "Canceled before any host accepted it: host \(hostId) has been offline since \(ISO8601.format(silentSince)); the agent was never launched."
            )
        case .queued where queueDeadline < now:
            return .timedOut(
                at: now,
                errorSummary: "queue deadline passed while host \(hostId) was offline; the agent was never launched")
        default:
            return nil
        }
    }

    /// A queued run with a cancel request whose queue deadline passed: no host launches it any more
    /// (each enforces the deadline), so the control plane closes it `canceled` rather than leaving it
    /// "Canceling…" or letting it time out. `nil` for any other run.
    public func outcomeOfCancelPastQueueDeadline(now: Date) -> RunEvent? {
        guard status == .queued, cancelRequestedAt != nil, queueDeadline < now else { return nil }
        return .canceled(
            at: now,
            errorSummary:
                "Canceled before any host accepted it: its queue deadline (\(ISO8601.format(queueDeadline))) passed; the agent was never launched."
        )
    }
}
