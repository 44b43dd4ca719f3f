import AgentJobsCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What an API token may do. Each scope includes the ones before it.
public enum TokenScope: String, Sendable, Codable, CaseIterable, Comparable {
    /// Read hosts, jobs and runs.
    case read
    /// Also create, edit, delete and trigger jobs, and cancel runs.
    case write
    /// Also manage tokens and registration tokens.
    case admin

    private var rank: Int { TokenScope.allCases.firstIndex(of: self)! }
    public static func < (lhs: TokenScope, rhs: TokenScope) -> Bool { lhs.rank < rhs.rank }
}

/// An API token as stored: never its secret, only the secret's hash.
public struct APIToken: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var scope: TokenScope
    public var createdAt: Date
    public var revokedAt: Date?

    public init(id: String, name: String, scope: TokenScope, createdAt: Date, revokedAt: Date?) {
        self.id = id
        self.name = name
        self.scope = scope
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// A one-time token that lets one host register, as stored: never its secret, only the secret's hash.
public struct RegistrationToken: Sendable, Hashable, Codable {
    public var id: String
    public var createdAt: Date
    public var expiresAt: Date
    /// When a host registered with it.
    public var usedAt: Date? = nil
    /// The host that registered with it.
    public var usedByHostId: String? = nil
    /// When an administrator revoked it (only an unused token can be revoked).
    public var revokedAt: Date? = nil

    public init(
        id: String, createdAt: Date, expiresAt: Date, usedAt: Date? = nil, usedByHostId: String? = nil,
        revokedAt: Date? = nil
    ) {
        self.id = id
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.usedAt = usedAt
        self.usedByHostId = usedByHostId
        self.revokedAt = revokedAt
    }

    /// Where the token stands at `now`. A used token stays `used`, a revoked one `revoked`, whatever
    /// the time; otherwise it is `expired` from `expiresAt` on (registration needs `expiresAt > now`).
    public func state(at now: Date) -> RegistrationTokenState {
        if usedAt != nil { return .used }
        if revokedAt != nil { return .revoked }
        return expiresAt > now ? .active : .expired
    }
}

/// Where a registration token stands.
public enum RegistrationTokenState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Unused, unrevoked and unexpired: a host can register with it.
    case active
    /// A host registered with it.
    case used
    /// Its lifetime ended before a host used it.
    case expired
    /// An administrator revoked it before a host used it.
    case revoked
}

/// A job with the most recent of its runs, as the API shows it.
public struct JobRecord: Sendable, Hashable {
    public var job: Job
    public var lastRun: Run?
    /// Where the job's schedule stands, when it has one.
    public var scheduleState: ScheduleState?

    public init(job: Job, lastRun: Run?, scheduleState: ScheduleState? = nil) {
        self.job = job
        self.lastRun = lastRun
        self.scheduleState = scheduleState
    }
}

/// What the scheduler did with one occurrence of a job's schedule.
public struct ScheduleOccurrence: Sendable, Hashable, Codable {
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// A run was started (`runId`).
        case started
        /// The job's previous run was still active (`activeRunId`); nothing was started.
        case skipped
        /// Not fired on time (control plane down, schedule paused) and not caught up.
        case missed
    }

    public var jobId: String
    public var scheduledAt: Date
    public var outcome: Outcome
    public var runId: String?
    public var activeRunId: String?
    public var reason: String?
    public var recordedAt: Date

    public init(
        jobId: String, scheduledAt: Date, outcome: Outcome, runId: String? = nil, activeRunId: String? = nil,
        reason: String? = nil, recordedAt: Date
    ) {
        self.jobId = jobId
        self.scheduledAt = scheduledAt
        self.outcome = outcome
        self.runId = runId
        self.activeRunId = activeRunId
        self.reason = reason
        self.recordedAt = recordedAt
    }
}

/// A job whose schedule is due, with the state the scheduler plans from.
public struct DueSchedule: Sendable, Hashable {
    public var job: Job
    public var state: ScheduleState

    public init(job: Job, state: ScheduleState) {
        self.job = job
        self.state = state
    }
}

/// Which jobs to list.
public struct JobFilter: Sendable, Hashable {
    /// A job's last run status, or none yet.
    public enum LastRun: Sendable, Hashable {
        case status(RunStatus)
        case never
    }

    public var hostId: String?
    public var agentType: AgentType?
    /// The job's exact name.
    public var name: String?
    /// Part of the job's name, ignoring the case of ASCII letters (the SQLite store's `lower`).
    public var nameContains: String?
    public var lastRun: LastRun?

    public init(
        hostId: String? = nil, agentType: AgentType? = nil, name: String? = nil, nameContains: String? = nil,
        lastRun: LastRun? = nil
    ) {
        self.hostId = hostId
        self.agentType = agentType
        self.name = name
        self.nameContains = nameContains
        self.lastRun = lastRun
    }
}

/// One page of jobs, newest first, and the cursor of the next page (nil on the last page).
public struct JobPage: Sendable, Hashable {
    public var jobs: [JobRecord]
    public var nextCursor: String?
    /// How many jobs match the filter, on every page.
    public var total: Int

    public init(jobs: [JobRecord], nextCursor: String?, total: Int) {
        self.jobs = jobs
        self.nextCursor = nextCursor
        self.total = total
    }
}

/// Which hosts to list; all set fields must match.
public struct HostFilter: Sendable, Hashable {
    /// The host's exact name.
    public var name: String?
    /// The start of the host's name (case-sensitive).
    public var namePrefix: String?
    /// A batch agent type the host manages.
    public var agentType: AgentType?

    public init(name: String? = nil, namePrefix: String? = nil, agentType: AgentType? = nil) {
        self.name = name
        self.namePrefix = namePrefix
        self.agentType = agentType
    }
}

/// One page of hosts by name (then id), and the cursor of the next page (nil on the last page).
public struct HostPage: Sendable, Hashable {
    public var hosts: [Host]
    public var nextCursor: String?
    /// How many hosts match the filter, on every page.
    public var total: Int

    public init(hosts: [Host], nextCursor: String?, total: Int) {
        self.hosts = hosts
        self.nextCursor = nextCursor
        self.total = total
    }
}

/// Which runs to list; all set fields must match.
public struct RunFilter: Sendable, Hashable {
    public var jobId: String?
    public var hostId: String?
    public var agentType: AgentType?
    public var status: RunStatus?
    /// Runs queued at or after this instant.
    public var queuedSince: Date?
    /// Runs queued before this instant.
    public var queuedUntil: Date?
    public init(
        jobId: String? = nil, hostId: String? = nil, agentType: AgentType? = nil, status: RunStatus? = nil,
        queuedSince: Date? = nil, queuedUntil: Date? = nil
    ) {
        self.jobId = jobId
        self.hostId = hostId
        self.agentType = agentType
        self.status = status
        self.queuedSince = queuedSince
        self.queuedUntil = queuedUntil
    }
}

/// One page of runs, newest first, and the cursor of the next page (nil on the last page).
public struct RunPage: Sendable, Hashable {
    public var runs: [Run]
    public var nextCursor: String?

    public init(runs: [Run], nextCursor: String?) {
        self.runs = runs
        self.nextCursor = nextCursor
    }
}

/// Where one batch of run retention stopped: the last run it looked at, in the order of their
/// queued time (milliseconds since 1970, as stored) and sequence.
public struct RunRetentionCursor: Sendable, Hashable {
    public var queuedAtMilliseconds: Int64
    public var sequence: Int64

    public init(queuedAtMilliseconds: Int64, sequence: Int64) {
        self.queuedAtMilliseconds = queuedAtMilliseconds
        self.sequence = sequence
    }
}

/// What one batch of run retention did.
public struct RunRetentionBatch: Sendable, Hashable {
    /// Runs deleted.
    public var deleted: Int
    /// Where the next batch starts; nil when this batch looked at the last run that could be due.
    public var next: RunRetentionCursor?

    public init(deleted: Int, next: RunRetentionCursor?) {
        self.deleted = deleted
        self.next = next
    }
}

/// Which audit entries to list; nil fields match everything.
public struct AuditFilter: Sendable, Hashable {
    /// ``AuditEntry/Action/targetKind``: `job`, `run`, `api_token`, `registration_token` or `host`.
    public var targetKind: String?
    public var action: AuditEntry.Action?
    /// The id of the token or host that acted.
    public var actorId: String?
    public var targetId: String?

    public init(
        targetKind: String? = nil, action: AuditEntry.Action? = nil, actorId: String? = nil, targetId: String? = nil
    ) {
        self.targetKind = targetKind
        self.action = action
        self.actorId = actorId
        self.targetId = targetId
    }
}

/// One page of audit entries, newest first, and the cursor of the next page (nil on the last page).
public struct AuditPage: Sendable, Hashable {
    public var entries: [AuditEntry]
    public var nextCursor: String?

    public init(entries: [AuditEntry], nextCursor: String?) {
        self.entries = entries
        self.nextCursor = nextCursor
    }
}

/// What cancelling a run did.
public enum CancelOutcome: Sendable, Hashable {
    /// The run's dispatch had not left the control plane, so it was canceled on the spot.
    case canceled(Run)
    /// The host was asked to stop the run; it ends as `canceled` when the host confirms.
    case requested(Run)

    public var run: Run {
        switch self {
        case .canceled(let run), .requested(let run): return run
        }
    }
}

/// The control plane's durable state. Every implementation passes the store conformance suite.
///
/// Invariants the implementations enforce in the database itself (so that several control-plane
/// replicas cannot break them): a job has at most one active run; a run and its dispatch command
/// are written in one transaction (the outbox).
public protocol Store: RunEventStore {
    /// Schema versions applied, in order.
    func appliedMigrations() async throws -> [Int]
    /// Finishes pending writes and releases the database; the store is not used afterwards.
    func close() async
    /// Returns when the database answers a trivial query (readiness).
    /// - Throws: ``StoreError`` when it does not.
    func checkAvailable() async throws
    /// Calls `listener` after every commit of this store object that appended outbox rows (a
    /// trigger, a cancel, a cancel for a host that runs a closed run), so that the outbox relay in
    /// this process publishes them at once instead of at its next poll. Writers in other processes
    /// are found by the relay's polling.
    func onOutboxAppended(_ listener: @escaping @Sendable () -> Void)
    /// Follows the changes of runs (created, changed, deleted), whichever process made them, until
    /// the calling task is cancelled: calls `changed` once as soon as it follows (what changed
    /// before is not known), then after commits that changed runs. Calls may be coalesced, and a
    /// call may come when nothing changed; none is missed while this runs. The database tells of
    /// the changes itself (SQLite: triggers count them, and the count is read
    /// four times a second; PostgreSQL: triggers `NOTIFY`, delivered at commit), so every writer is covered.
    /// - Throws: ``StoreError`` when the database is lost (follow again after a pause), or
    ///   `CancellationError`.
    func followRunChanges(_ changed: @escaping @Sendable () -> Void) async throws

    // MARK: API tokens
    /// Creates an API token; the secret is returned once and only its hash is stored.
    func createAPIToken(name: String, scope: TokenScope, by actor: RunRequester?, now: Date) async throws -> (
        APIToken, Secret
    )
    /// The unrevoked token whose secret has this hash.
    func apiToken(secretHash: String) async throws -> APIToken?
    func listAPITokens() async throws -> [APIToken]
    /// - Throws: ``StoreError/Code/notFound``.
    func revokeAPIToken(id: String, by actor: RunRequester?, now: Date) async throws -> APIToken

    // MARK: Registration tokens
    /// Creates a one-time registration token; the secret is returned once and only its hash is stored.
    func createRegistrationToken(expiresAt: Date, by actor: RunRequester?, now: Date) async throws -> (
        RegistrationToken, Secret
    )
    /// Every registration token, used, expired and revoked ones included, oldest first.
    func listRegistrationTokens() async throws -> [RegistrationToken]
    /// Revokes an unused registration token: no host can register with it from now on. Revoking a
    /// revoked token changes nothing.
    /// - Returns: The token, with `revokedAt` set.
    /// - Throws: ``StoreError/Code/notFound`` for an unknown token, ``StoreError/Code/conflict`` for a
    ///   token a host already used (that host's credential is what to revoke).
    func revokeRegistrationToken(id: String, by actor: RunRequester?, now: Date) async throws -> RegistrationToken

    // MARK: Hosts
    /// Revokes a host's credential: its API calls, heartbeats and events are refused from now on
    /// (every aggregator replica within 5 s). Revoking a revoked host changes nothing.
    /// - Returns: The host, with `revokedAt` set.
    /// - Throws: ``StoreError/Code/notFound`` for an unknown host.
    func revokeHost(id: String, by actor: RunRequester?, now: Date) async throws -> Host
    /// Gives a host a new credential (rotation), which also lifts a revocation.
    /// - Throws: ``StoreError/Code/notFound`` for an unknown host.
    func replaceHostCredential(hostId: String, credential: Secret, by actor: RunRequester?, now: Date) async throws
    /// Uses up a registration token and registers a host with a new credential, in one transaction
    /// (audited as done by the new host).
    /// - Throws: ``StoreError/Code/invalidRegistrationToken`` when the token is unknown, used, expired
    ///   or revoked.
    func registerHost(
        registrationTokenHash: String, name: String, managedAgents: [AgentType], credential: Secret, now: Date
    ) async throws -> Host
    func host(id: String) async throws -> Host?
    func host(credentialHash: String) async throws -> Host?
    /// Hosts matching `filter` by name, then id, after `cursor`; every one when `limit` is nil.
    /// Pages are keyed on (name, id), so a host registered meanwhile never makes another one skipped
    /// or repeated.
    /// - Throws: ``ValidationError`` for a malformed cursor.
    func listHosts(_ filter: HostFilter, cursor: String?, limit: Int?) async throws -> HostPage
    /// Replaces the agent types a host manages (audited as done by the host itself, the only caller).
    /// - Throws: ``StoreError/Code/notFound``.
    func updateManagedAgents(hostId: String, managedAgents: [AgentType], now: Date) async throws -> Host

    // MARK: Jobs
    /// Creates a job after checking its host exists and manages its agent type.
    /// - Throws: ``ValidationError`` (field `hostId` or `agentType`).
    func createJob(_ definition: JobDefinition, by actor: RunRequester?, now: Date) async throws -> Job
    func job(id: String) async throws -> JobRecord?
    /// Jobs matching `filter`, newest first, after `cursor`; every one when `limit` is nil. Pages
    /// are keyed on the job's creation order, so a job created meanwhile never makes another one
    /// skipped or repeated.
    /// - Throws: ``ValidationError`` for a malformed cursor.
    func listJobs(_ filter: JobFilter, cursor: String?, limit: Int?) async throws -> JobPage
    /// Replaces a job's definition if it is still at `expectedVersion`, bumping the version.
    /// - Throws: ``StoreError/Code/notFound``, ``StoreError/Code/conflict``, ``ValidationError``.
    func updateJob(
        id: String, expectedVersion: Int, definition: JobDefinition, by actor: RunRequester?, now: Date
    ) async throws -> Job
    /// Deletes a job's definition; its runs stay.
    /// - Throws: ``StoreError/Code/notFound``, ``StoreError/Code/activeRun``.
    func deleteJob(id: String, by actor: RunRequester?, now: Date) async throws

    // MARK: Runs
    /// Queues a run of the job's current definition and writes its dispatch to the outbox.
    /// - Throws: ``StoreError/Code/notFound``, ``StoreError/Code/activeRun`` (with the active run's id),
    ///   ``StoreError/Code/conflict`` (a store that does not serialize its writers: the job was edited
    ///   under every one of its attempts).
    /// - Parameters:
    ///   - rerunOf: For trigger ``RunTrigger/rerun``, the run repeated (kept on the new run as a link).
    ///   - triggeredBy: Who asked for the run (kept on it); nil when unknown.
    ///   - traceParent: The W3C trace context of the request or tick (``TraceParent``), kept with the
    ///     dispatch; nil when tracing is off.
    func triggerRun(
        jobId: String, trigger: RunTrigger, scheduledAt: Date?, rerunOf: String?, triggeredBy: RunRequester?,
        now: Date, traceParent: String?
    ) async throws -> Run
    func run(id: String) async throws -> Run?
    /// Runs matching `filter`, newest first, `limit` per page, after `cursor`.
    /// - Throws: ``ValidationError`` for a malformed cursor.
    func listRuns(_ filter: RunFilter, cursor: String?, limit: Int) async throws -> RunPage
    /// Asks for a run to be canceled.
    /// - Throws: ``StoreError/Code/notFound``, ``StoreError/Code/runFinished``.
    /// - Parameter requester: Who asks (kept on the run as `cancelRequestedBy`); nil when unknown.
    func requestCancel(runId: String, by requester: RunRequester?, now: Date) async throws -> CancelOutcome
    /// Writes the dispatch of every retry whose delay has passed by `now` (``Run/heldUntil``), at
    /// most `limit`, oldest due first; each exactly once, however many replicas call this.
    /// - Returns: The runs released.
    func releaseHeldRuns(now: Date, limit: Int) async throws -> [Run]

    // MARK: Schedules
    /// Scheduled jobs due at `now` (earliest first), at most `limit`.
    func dueSchedules(now: Date, limit: Int) async throws -> [DueSchedule]
    /// Applies the scheduler's decisions for a job in one transaction: starts runs (through the same
    /// path as a manual trigger, recording a skip when the job is busy), records every occurrence
    /// once, and advances the schedule — only if the schedule is still at `expectedCursor`, so that of
    /// several scheduler replicas exactly one acts on each occurrence.
    /// - Returns: The occurrences recorded; empty when another replica got there first or the job is gone.
    func recordOccurrences(
        jobId: String, expectedCursor: Date, decisions: [OccurrenceDecision], newState: ScheduleState, now: Date,
        traceParent: String?
    ) async throws -> [ScheduleOccurrence]
    /// A job's most recent occurrences, newest first.
    func scheduleOccurrences(jobId: String, limit: Int) async throws -> [ScheduleOccurrence]

    // MARK: Outbox
    /// Unsent outbox messages of `shards` after `sequence`, in write order. (A store whose lease
    /// always covers every shard, SQLite, returns every unsent message.)
    func pendingOutbox(after sequence: Int64, limit: Int, shards: OutboxShards) async throws -> [OutboxMessage]
    /// Renews the outbox shards `replica` holds and claims unheld ones up to its fair share (the
    /// shard count divided by the replicas that renewed within `duration`, rounded up), so that
    /// several relays publish disjoint parts of the outbox and a silent replica's shards move to
    /// the others once its leases expire. A replica holding more than its share keeps the lowest
    /// and lets the others expire, so a new replica gets its share within one lease.
    /// - Parameters:
    ///   - replica: This relay's id, unique per process.
    ///   - duration: How long the leases last; the database's clock times them.
    /// - Returns: What `replica` holds now. A store that one process owns (SQLite) returns every
    ///   shard, with no expiry.
    func leaseOutboxShards(replica: String, duration: Duration) async throws -> OutboxLease
    /// Gives up `replica`'s leases at once (a relay stopping), so the other replicas take its
    /// shards at their next renewal.
    func releaseOutboxShards(replica: String) async throws
    /// How many outbox rows are unsent, and when the oldest of them was written (for the metrics).
    func outboxBacklog() async throws -> OutboxBacklog
    /// Marks messages sent after the broker acknowledged them (sequences already sent or unknown are
    /// ignored).
    func markOutboxSent(sequences: [Int64]) async throws
    /// Deletes up to `limit` of the oldest sent outbox messages written before `cutoff`, with their
    /// payloads; unsent ones are kept whatever their age.
    /// - Returns: How many were deleted (fewer than `limit` when no more are due).
    func deleteSentOutbox(writtenBefore cutoff: Date, limit: Int) async throws -> Int

    // MARK: Retention
    /// Deletes one batch of run history. It looks at up to `limit` runs queued before `cutoff`,
    /// oldest first, after `cursor`, and deletes those that also ended before `cutoff` unless they
    /// are among the `keepPerJob` newest runs of a job that still exists. Both times must be past:
    /// `queued_at` is the control plane's clock, `finished_at` the host's, so a host whose clock
    /// runs late cannot get a run deleted early. Active runs are never deleted.
    func deleteEndedRuns(before cutoff: Date, keepPerJob: Int, after cursor: RunRetentionCursor?, limit: Int)
        async throws -> RunRetentionBatch
    /// Deletes up to `limit` of the oldest schedule occurrences recorded before `cutoff`.
    /// - Returns: How many were deleted (fewer than `limit` when no more are due).
    func deleteScheduleOccurrences(recordedBefore cutoff: Date, limit: Int) async throws -> Int
    /// Deletes up to `limit` of the oldest audit entries written before `cutoff`.
    /// - Returns: How many were deleted (fewer than `limit` when no more are due).
    func deleteAuditEntries(before cutoff: Date, limit: Int) async throws -> Int

    // MARK: Audit log
    /// Audit entries matching `filter`, newest first, `limit` per page, after `cursor`. Every write
    /// above that changes a job, token or host, every trigger but the schedule's, and every cancel
    /// request appends one entry in its own transaction.
    /// - Throws: ``ValidationError`` for a malformed cursor.
    func listAudit(_ filter: AuditFilter, cursor: String?, limit: Int) async throws -> AuditPage

    // MARK: Webhooks
    /// Saves a subscription with `definition.secret`, or a generated secret.
    /// - Returns: The subscription and its secret (shown once; never read back).
    /// - Throws: ``ValidationError`` (field `jobId`) for a job that does not exist.
    func createWebhook(_ definition: WebhookDefinition, by actor: RunRequester?, now: Date) async throws -> (
        Webhook, secret: String
    )
    func listWebhooks() async throws -> [Webhook]
    func webhook(id: String) async throws -> Webhook?
    /// Deletes a subscription and its deliveries, sent or not.
    /// - Throws: ``StoreError/Code/notFound``.
    func deleteWebhook(id: String, by actor: RunRequester?, now: Date) async throws
    /// A subscription's deliveries, newest first.
    /// - Throws: ``ValidationError`` for a malformed cursor.
    func listWebhookDeliveries(webhookId: String, cursor: String?, limit: Int) async throws -> WebhookDeliveryPage
    /// Takes up to `limit` pending deliveries due by `now` for sending: each one's attempt count
    /// grows and its next attempt moves `lease` ahead, so that no other sender takes it meanwhile,
    /// and a sender that dies while sending leaves it to be sent again once the lease is over.
    func claimWebhookDeliveries(now: Date, lease: Duration, limit: Int) async throws -> [WebhookSend]
    /// Records how attempt `attempt` of a delivery went; ignored when the delivery has moved on
    /// since (another sender took it after this one's lease ran out).
    func recordWebhookAttempt(deliveryId: String, attempt: Int, result: WebhookAttemptResult, now: Date)
        async throws
    /// Deletes up to `limit` deliveries written before `cutoff` that are no longer pending.
    /// - Returns: How many were deleted.
    func deleteWebhookDeliveries(before cutoff: Date, limit: Int) async throws -> Int
}

/// How one attempt to send a delivery went.
public enum WebhookAttemptResult: Sendable, Hashable {
    /// Answered with this 2xx status.
    case delivered(statusCode: Int)
    /// Not delivered: the status of the answer (nil without one) and why; tried again at
    /// `nextAttemptAt`, or given up when it is nil.
    case failed(statusCode: Int?, error: String, nextAttemptAt: Date?)
}

/// One page of deliveries, newest first.
public struct WebhookDeliveryPage: Sendable, Hashable {
    public var deliveries: [WebhookDelivery]
    public var nextCursor: String?

    public init(deliveries: [WebhookDelivery], nextCursor: String?) {
        self.deliveries = deliveries
        self.nextCursor = nextCursor
    }
}

extension Store {
    /// Every host, by name.
    public func listHosts() async throws -> [Host] {
        try await listHosts(HostFilter(), cursor: nil, limit: nil).hosts
    }

    /// Every job matching `filter`, newest first.
    public func listJobs(_ filter: JobFilter) async throws -> [JobRecord] {
        try await listJobs(filter, cursor: nil, limit: nil).jobs
    }

    // Changes by nobody known (tests, and commands that open the store themselves).
    public func createAPIToken(name: String, scope: TokenScope, now: Date) async throws -> (APIToken, Secret) {
        try await createAPIToken(name: name, scope: scope, by: nil, now: now)
    }
    public func revokeAPIToken(id: String, now: Date) async throws -> APIToken {
        try await revokeAPIToken(id: id, by: nil, now: now)
    }
    public func createRegistrationToken(expiresAt: Date, now: Date) async throws -> (RegistrationToken, Secret) {
        try await createRegistrationToken(expiresAt: expiresAt, by: nil, now: now)
    }
    public func revokeRegistrationToken(id: String, now: Date) async throws -> RegistrationToken {
        try await revokeRegistrationToken(id: id, by: nil, now: now)
    }
    public func revokeHost(id: String, now: Date) async throws -> Host {
        try await revokeHost(id: id, by: nil, now: now)
    }
    public func replaceHostCredential(hostId: String, credential: Secret) async throws {
        try await replaceHostCredential(hostId: hostId, credential: credential, by: nil, now: Date())
    }
    public func updateManagedAgents(hostId: String, managedAgents: [AgentType]) async throws -> Host {
        try await updateManagedAgents(hostId: hostId, managedAgents: managedAgents, now: Date())
    }
    public func createJob(_ definition: JobDefinition, now: Date) async throws -> Job {
        try await createJob(definition, by: nil, now: now)
    }
    public func updateJob(id: String, expectedVersion: Int, definition: JobDefinition, now: Date) async throws -> Job {
        try await updateJob(id: id, expectedVersion: expectedVersion, definition: definition, by: nil, now: now)
    }
    public func deleteJob(id: String) async throws {
        try await deleteJob(id: id, by: nil, now: Date())
    }

    /// ``triggerRun(jobId:trigger:scheduledAt:rerunOf:triggeredBy:now:traceParent:)`` of no earlier run.
    public func triggerRun(
        jobId: String, trigger: RunTrigger, scheduledAt: Date?, now: Date, traceParent: String?
    ) async throws -> Run {
        try await triggerRun(
            jobId: jobId, trigger: trigger, scheduledAt: scheduledAt, rerunOf: nil, triggeredBy: nil, now: now,
            traceParent: traceParent)
    }

    /// ``requestCancel(runId:by:now:)`` by nobody known.
    public func requestCancel(runId: String, now: Date) async throws -> CancelOutcome {
        try await requestCancel(runId: runId, by: nil, now: now)
    }

    /// ``triggerRun(jobId:trigger:scheduledAt:rerunOf:triggeredBy:now:traceParent:)`` of no earlier run, without a
    /// trace context.
    public func triggerRun(jobId: String, trigger: RunTrigger, scheduledAt: Date?, now: Date) async throws -> Run {
        try await triggerRun(
            jobId: jobId, trigger: trigger, scheduledAt: scheduledAt, rerunOf: nil, triggeredBy: nil, now: now,
            traceParent: nil)
    }

    /// ``recordOccurrences(jobId:expectedCursor:decisions:newState:now:traceParent:)`` without a
    /// trace context.
    public func recordOccurrences(
        jobId: String, expectedCursor: Date, decisions: [OccurrenceDecision], newState: ScheduleState, now: Date
    ) async throws -> [ScheduleOccurrence] {
        try await recordOccurrences(
            jobId: jobId, expectedCursor: expectedCursor, decisions: decisions, newState: newState, now: now,
            traceParent: nil)
    }

    /// The oldest unsent outbox messages, in write order.
    public func pendingOutbox(limit: Int) async throws -> [OutboxMessage] {
        try await pendingOutbox(after: 0, limit: limit, shards: .all)
    }

    /// Unsent outbox messages after `sequence`, in write order.
    public func pendingOutbox(after sequence: Int64, limit: Int) async throws -> [OutboxMessage] {
        try await pendingOutbox(after: sequence, limit: limit, shards: .all)
    }
}

/// A part of the outbox: rows are divided into ``count`` shards by their key (a host id), so all
/// the commands for one host are in one shard and one relay publishes them, in order.
public enum OutboxShards: Sendable, Hashable {
    /// Every row.
    case all
    /// The rows of these shards, each in `0..<count`.
    case only(Set<Int>)

    /// How many shards the outbox has (a fixed part of the schema; relay replicas beyond it idle).
    public static let count = 32

    /// Whether `self` includes every shard `other` does.
    public func contains(_ other: OutboxShards) -> Bool {
        switch (self, other) {
        case (.all, _): true
        case (.only, .all): false
        case (.only(let held), .only(let wanted)): wanted.isSubset(of: held)
        }
    }

    /// Whether no row is included.
    public var isEmpty: Bool {
        if case .only(let shards) = self { return shards.isEmpty }
        return false
    }
}

/// The outbox rows not yet published.
public struct OutboxBacklog: Sendable, Hashable {
    public var unsent: Int
    /// When the oldest unsent row was written; nil when none is unsent.
    public var oldestWrittenAt: Date?

    public init(unsent: Int, oldestWrittenAt: Date?) {
        self.unsent = unsent
        self.oldestWrittenAt = oldestWrittenAt
    }
}

/// The outbox shards one relay replica holds (``Store/leaseOutboxShards(replica:duration:)``).
public struct OutboxLease: Sendable, Hashable {
    public var shards: OutboxShards
    /// How long the lease lasts, counted from before the call that returned it; nil: for as long as
    /// the store is open.
    public var duration: Duration?
    /// The relay replicas that renewed within the lease's duration, this one included.
    public var replicas: Int

    public init(shards: OutboxShards, duration: Duration?, replicas: Int) {
        self.shards = shards
        self.duration = duration
        self.replicas = replicas
    }
}

/// Runs the control plane closed itself: their host went silent, or a cancel outlived the queue.
public struct ExpiredRuns: Sendable, Hashable {
    /// Running runs now `failed` with "host lost".
    public var lost: [Run]
    /// Queued runs past their queue deadline, now `timed_out`.
    public var timedOut: [Run]
    /// Queued runs with a cancel request that no host accepted, now `canceled`.
    public var canceled: [Run]

    public init(lost: [Run] = [], timedOut: [Run] = [], canceled: [Run] = []) {
        self.lost = lost
        self.timedOut = timedOut
        self.canceled = canceled
    }

    /// Every run closed, in the order lost, timed out, canceled.
    public var all: [Run] { lost + timedOut + canceled }
}

/// A heartbeat as host tracking read it.
public struct ReceivedHeartbeat: Sendable, Hashable {
    public var heartbeat: HostHeartbeat
    /// The partition of `agentjobs.host-events` it was read from.
    public var partition: Int32
    /// When it was received: the host's last-seen time (its own `sentAt` only gives the clock skew
    /// that is reported).
    public var receivedAt: Date

    public init(_ heartbeat: HostHeartbeat, partition: Int32, receivedAt: Date) {
        self.heartbeat = heartbeat
        self.partition = partition
        self.receivedAt = receivedAt
    }

    /// The clock skew reported for the host: its `sentAt` minus the receive time, in milliseconds.
    public var clockSkewMilliseconds: Int64 {
        Int64((heartbeat.sentAt.timeIntervalSince(receivedAt) * 1000).rounded())
    }

    /// The last heartbeat of each host in `heartbeats`, in host id order (the order concurrent
    /// writers take the hosts' row locks in).
    public static func latestPerHost(_ heartbeats: [ReceivedHeartbeat]) -> [ReceivedHeartbeat] {
        var latest: [String: ReceivedHeartbeat] = [:]
        for received in heartbeats { latest[received.heartbeat.hostId] = received }
        return latest.values.sorted { $0.heartbeat.hostId < $1.heartbeat.hostId }
    }

    /// The ids of the runs the host reports running: the only ones it can be told to stop.
    public var runningRunIds: [String] { heartbeat.activeRuns.filter { $0.status == .running }.map(\.runId) }
}

/// The part of the store the status aggregator and host tracking use.
public protocol RunEventStore: Sendable {
    /// The stored credential hash of a host (its event-signing key), or `nil` for an unknown host.
    func hostCredentialHash(hostId: String) async throws -> String?

    /// Applies a batch of verified lifecycle events in one transaction, idempotently: each goes
    /// through the run state machine, so duplicates and stale events change nothing and terminal
    /// states stay final. A run that ends and whose retry policy asks for another attempt gets it
    /// in the same transaction (``Run/nextAttempt(retryable:now:)``; a rejected dispatch is never
    /// retried), held until its delay has passed.
    /// - Returns: One outcome per event, in order.
    func applyRunEvents(_ events: [RunLifecycleEvent], now: Date) async throws -> [RunEventOutcome]

    /// Records heartbeats in one transaction, in order (a later heartbeat of the same host wins):
    /// each host's last-seen time, version, partition, clock skew, concurrency limit and running
    /// count, and for every run a host reports running that the control plane has already closed,
    /// a `RunCancel` in the outbox.
    /// - Returns: For each host told to stop runs, their ids.
    func recordHeartbeats(_ heartbeats: [ReceivedHeartbeat]) async throws -> [String: [String]]

    /// Records that host tracking read back one of its probes (see ``HostTrackingWatermark``).
    /// - Returns: The partition's watermark afterwards.
    func recordTrackingProbe(partition: Int32, trackerId: String, sentAt: Date, readAt: Date, maxDelay: Duration)
        async throws -> HostTrackingWatermark

    /// How far host tracking has read each partition of `agentjobs.host-events`.
    func hostTrackingWatermarks() async throws -> [Int32: HostTrackingWatermark]

    /// Hosts not heard from since `cutoff` (never heard from: registered before it).
    func hostsNotHeard(since cutoff: Date) async throws -> [Host]

    /// How many hosts are registered and not revoked (for the hosts-by-status gauges).
    func hostCount() async throws -> Int

    /// Closes the active runs of hosts declared offline, each as
    /// ``Run/outcomeWhenHostOffline(silentSince:hostLost:now:)`` decides, and every queued run with
    /// a cancel request past its queue deadline as canceled. A run that timed out in the queue is
    /// retried as its policy says; one given up as host lost is not (its agent may still run).
    /// - Parameters:
    ///   - offline: The offline hosts and when each was last heard from.
    ///   - lost: The offline hosts silent for the lost-after time: their running runs fail.
    func closeRunsOfOfflineHosts(_ offline: [String: Date], lost: Set<String>, now: Date) async throws
        -> ExpiredRuns

    /// The secret host tracking signs its probes with, shared by every replica; created on first use.
    func trackingProbeSecret() async throws -> String
}

extension RunEventStore {
    /// Records a host's heartbeat and, for every run it reports running that the control plane has
    /// already closed, writes a `RunCancel` to the outbox.
    /// - Returns: The ids of the runs the host was told to stop.
    public func recordHeartbeat(_ heartbeat: HostHeartbeat, partition: Int32, receivedAt: Date) async throws
        -> [String]
    {
        try await recordHeartbeats([ReceivedHeartbeat(heartbeat, partition: partition, receivedAt: receivedAt)])[
            heartbeat.hostId] ?? []
    }
}
