#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One change made through the API, as the append-only audit log keeps it: what was done, to what,
/// when, and by whom. Written by the store in the transaction of the change itself, so a change
/// without its entry (or an entry without its change) never exists.
public struct AuditEntry: Sendable, Hashable {
    public enum Action: String, Sendable, Hashable, CaseIterable {
        case jobCreated = "job.created"
        case jobUpdated = "job.updated"
        case jobPaused = "job.paused"
        case jobResumed = "job.resumed"
        case jobDeleted = "job.deleted"
        case runTriggered = "run.triggered"
        case runRerun = "run.rerun"
        case runCancelRequested = "run.cancel_requested"
        case apiTokenCreated = "api_token.created"
        case apiTokenRevoked = "api_token.revoked"
        case registrationTokenCreated = "registration_token.created"
        case registrationTokenRevoked = "registration_token.revoked"
        case hostRegistered = "host.registered"
        case hostAgentsUpdated = "host.agents_updated"
        case hostCredentialReplaced = "host.credential_replaced"
        case hostRevoked = "host.revoked"
        case webhookCreated = "webhook.created"
        case webhookDeleted = "webhook.deleted"

        /// What the action is done to: `job`, `run`, `api_token`, `registration_token`, `host` or
        /// `webhook` (the part before the dot), the `kind` filter of `GET /api/v1/audit`.
        public var targetKind: String { String(rawValue.prefix { $0 != "." }) }

        /// Every target kind, in a stable order.
        public static let targetKinds = ["job", "run", "api_token", "registration_token", "host", "webhook"]
    }

    /// The entry's place in the log (assigned by the store; 0 before it is stored).
    public var sequence: Int64
    public var at: Date
    public var action: Action
    /// Who did it; nil for a command run on the control plane's machine without a token
    /// (`agentjobs tokens create`).
    public var actor: RunRequester?
    /// The id of what was changed (a job, run, token or host id).
    public var targetId: String
    /// Its name when it has one (a job's, token's or host's), as it was then.
    public var targetName: String?
    /// What changed, in words (`version 3: schedule, timeoutSeconds`); nil when the action says it all.
    public var summary: String?

    public init(
        sequence: Int64 = 0, at: Date, action: Action, actor: RunRequester?, targetId: String,
        targetName: String? = nil, summary: String? = nil
    ) {
        self.sequence = sequence
        self.at = at
        self.action = action
        self.actor = actor
        self.targetId = targetId
        self.targetName = targetName
        self.summary = summary
    }

    /// A job was created.
    public static func jobCreated(_ job: Job, actor: RunRequester?, at: Date) -> AuditEntry {
        AuditEntry(
            at: at, action: .jobCreated, actor: actor, targetId: job.id, targetName: job.name,
            summary: "version 1: \(job.agentType.rawValue) on host \(job.hostId)"
                + (job.schedule.map { ", schedule \($0.cron) \($0.timezone)" } ?? ""))
    }

    /// A run was triggered other than by its schedule (`run.triggered`, or `run.rerun` for a rerun).
    public static func runTriggered(_ run: Run, actor: RunRequester?, at: Date) -> AuditEntry {
        AuditEntry(
            at: at, action: run.trigger == .rerun ? .runRerun : .runTriggered, actor: actor, targetId: run.id,
            targetName: run.jobName,
            summary: "job \(run.jobId) version \(run.jobVersion), trigger \(run.trigger.rawValue)"
                + (run.rerunOf.map { ", rerun of \($0)" } ?? ""))
    }

    /// Someone asked for a run to be canceled.
    public static func cancelRequested(_ run: Run, actor: RunRequester?, withdrawn: Bool, at: Date) -> AuditEntry {
        AuditEntry(
            at: at, action: .runCancelRequested, actor: actor, targetId: run.id, targetName: run.jobName,
            summary: withdrawn ? "canceled before its dispatch was sent" : "the host was asked to stop it")
    }

    /// A host registered itself (the actor) with a registration token.
    public static func hostRegistered(_ host: Host, registrationTokenId: String?, at: Date) -> AuditEntry {
        AuditEntry(
            at: at, action: .hostRegistered, actor: RunRequester(kind: .host, id: host.id, name: host.name),
            targetId: host.id, targetName: host.name,
            summary: (registrationTokenId.map { "with registration token \($0); " } ?? "") + "agents "
                + host.managedAgents.map(\.rawValue).joined(separator: ", "))
    }

    /// A host re-synced the agent types it manages (the host itself is the actor).
    public static func hostAgentsUpdated(_ host: Host, at: Date) -> AuditEntry {
        AuditEntry(
            at: at, action: .hostAgentsUpdated, actor: RunRequester(kind: .host, id: host.id, name: host.name),
            targetId: host.id, targetName: host.name,
            summary: "agents " + host.managedAgents.map(\.rawValue).joined(separator: ", "))
    }

    /// The entry of a job edit: `job.paused` or `job.resumed` when only the schedule's pause flag
    /// changed, `job.updated` naming the changed fields otherwise.
    public static func jobEdit(
        from old: JobDefinition, to new: JobDefinition, version: Int, jobId: String, actor: RunRequester?, at: Date
    ) -> AuditEntry {
        var unpaused = new
        unpaused.schedule?.paused = old.schedule?.paused ?? false
        if unpaused == old, let paused = new.schedule?.paused, paused != old.schedule?.paused {
            return AuditEntry(
                at: at, action: paused ? .jobPaused : .jobResumed, actor: actor, targetId: jobId, targetName: new.name,
                summary: "version \(version)")
        }
        let changed = new.changedFields(from: old)
        return AuditEntry(
            at: at, action: .jobUpdated, actor: actor, targetId: jobId, targetName: new.name,
            summary: "version \(version): " + (changed.isEmpty ? "no field changed" : changed.joined(separator: ", ")))
    }
}

extension JobDefinition {
    /// The fields (as the API names them) whose values differ from `old`.
    public func changedFields(from old: JobDefinition) -> [String] {
        var fields: [String] = []
        if name != old.name { fields.append("name") }
        if hostId != old.hostId { fields.append("hostId") }
        if agentType != old.agentType { fields.append("agentType") }
        if parameters != old.parameters { fields.append("parameters") }
        if schedule != old.schedule { fields.append("schedule") }
        if timeoutSeconds != old.timeoutSeconds { fields.append("timeoutSeconds") }
        if queueTimeoutSeconds != old.queueTimeoutSeconds { fields.append("queueTimeoutSeconds") }
        if retry != old.retry { fields.append("retry") }
        return fields
    }
}

extension AuditEntry {
    /// A webhook subscription was created (its secret is never logged).
    public static func webhookCreated(_ webhook: Webhook, actor: RunRequester?, at: Date) -> AuditEntry {
        AuditEntry(
            at: at, action: .webhookCreated, actor: actor, targetId: webhook.id, targetName: webhook.url,
            summary: webhook.events.map(\.rawValue).joined(separator: ", ") + " as \(webhook.format.rawValue)"
                + (webhook.jobId.map { " for job \($0)" } ?? " for every job"))
    }
}
