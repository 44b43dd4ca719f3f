#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Where a job's schedule stands: the last occurrence handled, the next one, and when to act on it.
public struct ScheduleState: Sendable, Hashable {
    /// Occurrences up to and including this instant are handled (fired, skipped or missed).
    public var cursor: Date
    /// The next occurrence after ``cursor`` (its nominal time), or nil when there is none.
    public var nextOccurrence: Date?
    /// When the scheduler should act: the next occurrence plus the job's jitter; nil when paused or done.
    public var dueAt: Date?

    public init(cursor: Date, nextOccurrence: Date?, dueAt: Date?) {
        self.cursor = cursor
        self.nextOccurrence = nextOccurrence
        self.dueAt = dueAt
    }
}

/// What to do with one occurrence.
public struct OccurrenceDecision: Sendable, Hashable {
    public enum Action: String, Sendable, Hashable {
        /// Start a run (or record it skipped if the job's previous run is still active).
        case start
        /// Record as missed, start nothing.
        case missed
    }

    public var scheduledAt: Date
    public var action: Action
    /// For a catch-up start or a miss: why.
    public var reason: String?

    public init(scheduledAt: Date, action: Action, reason: String? = nil) {
        self.scheduledAt = scheduledAt
        self.action = action
        self.reason = reason
    }
}

/// Decides, as a pure function of the schedule, its state and the clock, which occurrences to fire
/// and which were missed.
public enum SchedulePlanner {
    /// An occurrence handled at most this late (after its jitter) is on time; later ones follow the
    /// missed policy.
    public static let onTimeTolerance: TimeInterval = 60
    /// At most this many occurrences are recorded individually per pass (a long outage of a
    /// per-minute job would otherwise write thousands of "missed" rows); the oldest recorded miss
    /// says how many earlier ones were folded into it.
    public static let maxRecordedOccurrences = 100

    /// The state of a schedule that starts counting at `now` (new job, or new cron or time zone).
    public static func initialState(for schedule: JobSchedule, jobId: String, now: Date) -> ScheduleState {
        guard let cron = try? schedule.cronSchedule() else {
            return ScheduleState(cursor: now, nextOccurrence: nil, dueAt: nil)
        }
        let next = cron.nextFire(after: now)
        return ScheduleState(cursor: now, nextOccurrence: next, dueAt: dueAt(next, schedule: schedule, jobId: jobId))
    }

    /// The state after pausing or resuming: a paused schedule is never due; a resumed one is due at
    /// once if it passed occurrences while paused, so that the missed policy handles them.
    public static func state(_ state: ScheduleState, for schedule: JobSchedule, jobId: String, now: Date)
        -> ScheduleState
    {
        var state = state
        guard !schedule.paused else {
            state.dueAt = nil
            return state
        }
        guard let next = state.nextOccurrence else { return state }
        state.dueAt = next <= now ? now : dueAt(next, schedule: schedule, jobId: jobId)
        return state
    }

    /// The fixed jitter offset of a job: a stable hash (FNV-1a) of its id, so every replica agrees.
    public static func jitter(jobId: String, maxSeconds: Int) -> TimeInterval {
        guard maxSeconds > 0 else { return 0 }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in jobId.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return TimeInterval(hash % UInt64(maxSeconds + 1))
    }

    static func dueAt(_ occurrence: Date?, schedule: JobSchedule, jobId: String) -> Date? {
        guard let occurrence, !schedule.paused else { return nil }
        return occurrence.addingTimeInterval(jitter(jobId: jobId, maxSeconds: schedule.jitterSeconds))
    }

    /// The decisions for every occurrence after `state.cursor` whose (jittered) time has come by
    /// `now`, and the state after them.
    ///
    /// The latest occurrence, if handled within ``onTimeTolerance`` of its jittered time, starts a
    /// run. Older (missed) ones follow the policy: `skip` records them missed; `latest` starts one
    /// catch-up run for the most recent missed occurrence within the catch-up window — unless an
    /// on-time occurrence starts anyway — and records the rest missed.
    public static func plan(
        schedule: JobSchedule, jobId: String, state: ScheduleState, now: Date
    ) -> (decisions: [OccurrenceDecision], state: ScheduleState) {
        guard let cron = try? schedule.cronSchedule() else {
            return ([], ScheduleState(cursor: now, nextOccurrence: nil, dueAt: nil))
        }
        guard !schedule.paused else {
            return ([], ScheduleState(cursor: state.cursor, nextOccurrence: state.nextOccurrence, dueAt: nil))
        }
        let jitter = jitter(jobId: jobId, maxSeconds: schedule.jitterSeconds)
        var due: [Date] = []
        var unrecorded = 0
        var after = state.cursor
        while let occurrence = cron.nextFire(after: after), occurrence.addingTimeInterval(jitter) <= now {
            due.append(occurrence)
            after = occurrence
            if due.count > maxRecordedOccurrences {
                due.removeFirst()
                unrecorded += 1
            }
        }
        let onTime = due.last.flatMap { now.timeIntervalSince($0) <= onTimeTolerance + jitter ? $0 : nil }
        let missed = onTime == nil ? due : Array(due.dropLast())
        var catchUp: Date?
        if schedule.missedPolicy == .latest, onTime == nil, let latest = missed.last,
            now.timeIntervalSince(latest) <= TimeInterval(schedule.catchUpWindowSeconds) + jitter
        {
            catchUp = latest
        }
        let missReason =
            schedule.missedPolicy == .skip
            ? "not fired on time (missed policy: skip)"
            : "not fired on time; only the latest occurrence within the catch-up window runs"
        var decisions: [OccurrenceDecision] = missed.map { occurrence in
            occurrence == catchUp
                ? OccurrenceDecision(scheduledAt: occurrence, action: .start, reason: "catch-up of a missed occurrence")
                : OccurrenceDecision(scheduledAt: occurrence, action: .missed, reason: missReason)
        }
        if let onTime { decisions.append(OccurrenceDecision(scheduledAt: onTime, action: .start)) }
        if unrecorded > 0, let first = decisions.firstIndex(where: { $0.action == .missed }) {
            decisions[first].reason = missReason + " (and \(unrecorded) earlier occurrences)"
        }
        let cursor = due.last ?? state.cursor
        let next = cron.nextFire(after: cursor)
        return (
            decisions,
            ScheduleState(cursor: cursor, nextOccurrence: next, dueAt: dueAt(next, schedule: schedule, jobId: jobId))
        )
    }
}
