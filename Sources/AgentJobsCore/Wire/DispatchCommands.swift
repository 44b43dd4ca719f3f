#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The Kafka topics of the wire contract (see docs/wire-format.md).
public enum Topic {
    public static let dispatch = "agentjobs.dispatch"
    public static let runEvents = "agentjobs.run-events"
    public static let hostEvents = "agentjobs.host-events"
    public static let runStatus = "agentjobs.run-status"
    public static let deadLetter = "agentjobs.dead-letter"
}

/// Tells a host's orchestrator to start a run. Keyed by host id on `agentjobs.dispatch`.
public struct RunDispatch: WireBody, Hashable {
    public static let type = "agentjobs.run.dispatch"
    public static let version = 1

    public var runId: String
    public var jobId: String
    public var jobVersion: Int
    public var hostId: String
    public var agentType: AgentType
    public var parameters: AgentParameters
    /// What triggered the run, among the names version 1 began with: `manual`, `schedule`, `api`.
    /// Informational for the host. A rerun goes out as `manual` (a person's "Run again"): an
    /// orchestrator of an earlier release reads the field as a closed list and would dead-letter the
    /// dispatch, and a dispatch no host answers leaves its run queued while the host is online. The
    /// run itself, in the API and on `agentjobs.run-status`, says `rerun`. Read as plain text, so a
    /// later name cannot make a dispatch undecodable here.
    public var trigger: String
    public var queuedAt: Date
    /// Not started by then → the host reports `timed_out` without launching.
    public var queueDeadline: Date
    public var timeoutSeconds: Int
    public var dispatchEpoch: Int

    public init(run: Run) {
        runId = run.id
        jobId = run.jobId
        jobVersion = run.jobVersion
        hostId = run.hostId
        agentType = run.agentType
        parameters = run.parameters
        trigger = run.trigger == .rerun ? RunTrigger.manual.rawValue : run.trigger.rawValue
        queuedAt = run.queuedAt
        queueDeadline = run.queueDeadline
        timeoutSeconds = run.timeoutSeconds
        dispatchEpoch = run.dispatchEpoch
    }
}

/// Asks a host's orchestrator to stop a run (or never start it). Keyed by host id on
/// `agentjobs.dispatch`, so it cannot overtake its dispatch.
public struct RunCancel: WireBody, Hashable {
    public static let type = "agentjobs.run.cancel"
    public static let version = 1

    public var runId: String
    public var hostId: String
    public var dispatchEpoch: Int
    public var requestedAt: Date

    public init(runId: String, hostId: String, dispatchEpoch: Int, requestedAt: Date) {
        self.runId = runId
        self.hostId = hostId
        self.dispatchEpoch = dispatchEpoch
        self.requestedAt = requestedAt
    }
}

extension RunDispatch {
    /// The outbox payload: the same bytes as `JSONEncoder` with sorted keys and ``ISO8601`` dates
    /// gives, written directly.
    public var jsonBytes: [UInt8] {
        var writer = JSONWriter(capacity: 384)
        writer.beginObject()
        writer.key("agentType")
        writer.string(agentType.rawValue)
        writer.key("dispatchEpoch")
        writer.int(dispatchEpoch)
        writer.key("hostId")
        writer.string(hostId)
        writer.key("jobId")
        writer.string(jobId)
        writer.key("jobVersion")
        writer.int(jobVersion)
        writer.key("parameters")
        parameters.write(to: &writer)
        writer.key("queueDeadline")
        writer.string(ISO8601.format(queueDeadline))
        writer.key("queuedAt")
        writer.string(ISO8601.format(queuedAt))
        writer.key("runId")
        writer.string(runId)
        writer.key("timeoutSeconds")
        writer.int(timeoutSeconds)
        writer.key("trigger")
        writer.string(trigger)
        writer.endObject()
        return writer.bytes
    }
}

extension RunCancel {
    /// The outbox payload: the same bytes as `JSONEncoder` with sorted keys and ``ISO8601`` dates
    /// gives, written directly.
    public var jsonBytes: [UInt8] {
        var writer = JSONWriter(capacity: 160)
        writer.beginObject()
        writer.key("dispatchEpoch")
        writer.int(dispatchEpoch)
        writer.key("hostId")
        writer.string(hostId)
        writer.key("requestedAt")
        writer.date(requestedAt)
        writer.key("runId")
        writer.string(runId)
        writer.endObject()
        return writer.bytes
    }
}
