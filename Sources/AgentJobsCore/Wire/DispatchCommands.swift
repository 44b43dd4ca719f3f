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
    public var trigger: RunTrigger
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
        trigger = run.trigger
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

/// A message waiting in the store's outbox, written in the same transaction as the change it announces.
public struct OutboxMessage: Sendable, Hashable {
    /// Increasing in write order; the relay publishes in this order.
    public var sequence: Int64
    public var topic: String
    public var key: String
    /// The run the message is about.
    public var runId: String?
    /// The message type (``RunDispatch/type``, ``RunCancel/type``).
    public var type: String
    /// The JSON body.
    public var payload: [UInt8]
    public var createdAt: Date

    public init(
        sequence: Int64, topic: String, key: String, runId: String? = nil, type: String, payload: [UInt8],
        createdAt: Date
    ) {
        self.sequence = sequence
        self.topic = topic
        self.key = key
        self.runId = runId
        self.type = type
        self.payload = payload
        self.createdAt = createdAt
    }
}
