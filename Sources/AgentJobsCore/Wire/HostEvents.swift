#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What a host reports about a run on `agentjobs.run-events` (keyed by run id).
public enum RunEventType: String, Sendable, Codable, CaseIterable, Hashable {
    /// The orchestrator recorded the dispatch durably and will launch it.
    case accepted
    case started
    case succeeded
    case failed
    case timedOut = "timed_out"
    case canceled
    /// Never launched: the agent type is not managed here, the image is missing, the dispatch was
    /// for an older epoch, ….
    case rejected
    /// A stop (cancel or timeout) could not be confirmed; the agent may still be running. Changes
    /// no status; it tells operators where to look instead of hanging silently.
    case stopFailed = "stop_failed"

    /// The `ce_type` without version, e.g. `agentjobs.run.timed_out`.
    public var wireType: String { "agentjobs.run.\(rawValue)" }
}

/// One lifecycle event of a run, published by the orchestrator of the run's host.
///
/// `sequence` counts a run's events on its host from 1; with `dispatchEpoch` it lets consumers drop
/// duplicates and stale events. Terminal events carry what the run ended with.
public struct RunLifecycleEvent: Sendable, Hashable, Codable {
    public static let version = 1

    public var type: RunEventType
    public var runId: String
    public var jobId: String
    public var hostId: String
    public var dispatchEpoch: Int
    public var sequence: Int
    public var at: Date
    public var exitCode: Int?
    /// For failed and timed-out runs: the summary of ARCHITECTURE.md (at most 4096 bytes).
    public var errorSummary: String?
    /// For rejected and stop_failed events: why, in one sentence.
    public var reason: String?

    public init(
        type: RunEventType, runId: String, jobId: String, hostId: String, dispatchEpoch: Int, sequence: Int, at: Date,
        exitCode: Int? = nil, errorSummary: String? = nil, reason: String? = nil
    ) {
        self.type = type
        self.runId = runId
        self.jobId = jobId
        self.hostId = hostId
        self.dispatchEpoch = dispatchEpoch
        self.sequence = sequence
        self.at = at
        self.exitCode = exitCode
        self.errorSummary = errorSummary
        self.reason = reason
    }

    /// The full `ce_type`, e.g. `agentjobs.run.started.v1`.
    public var versionedType: String { "\(type.wireType).v\(Self.version)" }

    /// The status change this event asks for, or `nil` for events that change no status
    /// (`accepted`, `stop_failed`). A `rejected` run never started: it fails with the reason.
    public var runEvent: RunEvent? {
        switch type {
        case .accepted, .stopFailed: return nil
        case .started: return .started(at: at)
        case .succeeded: return .succeeded(at: at, exitCode: exitCode)
        case .failed: return .failed(at: at, exitCode: exitCode, errorSummary: errorSummary ?? reason)
        case .timedOut: return .timedOut(at: at, errorSummary: errorSummary ?? reason)
        case .canceled: return .canceled(at: at, errorSummary: errorSummary ?? reason)
        case .rejected:
            return .failed(
                at: at, exitCode: nil, errorSummary: "rejected by the host: " + (reason ?? "no reason given"))
        }
    }

    /// Decodes a lifecycle event, checking that `ce_type`, key and body agree.
    /// - Throws: ``WireError`` `unknownType`, `unknownVersion` or `undecodableBody`.
    public static func decode(_ message: WireMessage) throws(WireError) -> RunLifecycleEvent {
        guard let parsed = message.typeAndVersion, parsed.type.hasPrefix("agentjobs.run."),
            let type = RunEventType(rawValue: String(parsed.type.dropFirst("agentjobs.run.".count)))
        else {
            throw WireError(.unknownType, "ce_type \(message.envelope.type) is not a run lifecycle event")
        }
        guard parsed.version == version else {
            throw WireError(.unknownVersion, "\(message.envelope.type): this build reads version \(version) only")
        }
        let event: RunLifecycleEvent
        do {
            event = try RunLifecycleEvent(jsonBody: message.body)
        } catch {
            throw WireError(.undecodableBody, "\(message.envelope.type) body does not decode: \(error)")
        }
        guard event.type == type, event.runId == message.envelope.key, event.runId == message.envelope.subject,
            message.envelope.source == WireEnvelope.hostSource(event.hostId)
        else {
            throw WireError(.undecodableBody, "\(message.envelope.type): body, key, subject and source disagree")
        }
        // Free text from a host is bounded (a summary is cut to 4096 bytes when applied anyway).
        guard (event.errorSummary?.utf8.count ?? 0) <= maxFreeTextBytes,
            (event.reason?.utf8.count ?? 0) <= maxFreeTextBytes, event.runId.utf8.count <= 128,
            event.hostId.utf8.count <= 128, event.jobId.utf8.count <= 128
        else {
            throw WireError(
                .undecodableBody,
                "\(message.envelope.type): a text field is longer than this build accepts (\(maxFreeTextBytes) bytes)")
        }
        return event
    }

    /// The most bytes of `errorSummary` or `reason` an event may carry.
    public static let maxFreeTextBytes = 64 * 1024

    /// Reads an event body. Hand-written rather than `Decodable` because the aggregator decodes
    /// every event of the fleet: `JSONDecoder` cost ~10 µs per event; this reads the members in
    /// one pass without building a dictionary. Fields this version does not know are ignored, as
    /// `Decodable` ignored them; a null field counts as absent; of a repeated key the last counts.
    /// - Throws: `JSONParser.Failure` when the body is not a JSON object; ``ValidationError``
    ///   naming the missing or malformed field.
    init(jsonBody: [UInt8]) throws {
        var fields = (
            type: JSONValue.null, at: JSONValue.null, runId: JSONValue.null, jobId: JSONValue.null,
            hostId: JSONValue.null, dispatchEpoch: JSONValue.null, sequence: JSONValue.null,
            exitCode: JSONValue.null, errorSummary: JSONValue.null, reason: JSONValue.null
        )
        try JSONParser.forEachMember(of: jsonBody) { key, value in
            switch key {
            case "type": fields.type = value
            case "at": fields.at = value
            case "runId": fields.runId = value
            case "jobId": fields.jobId = value
            case "hostId": fields.hostId = value
            case "dispatchEpoch": fields.dispatchEpoch = value
            case "sequence": fields.sequence = value
            case "exitCode": fields.exitCode = value
            case "errorSummary": fields.errorSummary = value
            case "reason": fields.reason = value
            default: break
            }
        }
        func required(_ value: JSONValue, _ field: String) throws -> String {
            // Ids and names: control characters (U+0000 above all) are refused, not stored.
            guard let string = try value.text(field: field) else {
                throw ValidationError(field: field, message: "is required")
            }
            return string
        }
        let int32 = Int(Int32.min)...Int(Int32.max)
        func requiredInt(_ value: JSONValue, _ field: String) throws -> Int {
            guard let int = try value.int(field: field, range: int32) else {
                throw ValidationError(field: field, message: "is required")
            }
            return int
        }
        let typeName = try required(fields.type, "type")
        guard let type = RunEventType(rawValue: typeName) else {
            throw ValidationError(field: "type", message: "'\(typeName)' is not a run event type")
        }
        let atText = try required(fields.at, "at")
        guard let at = ISO8601.parse(atText) else {
            throw ValidationError(field: "at", message: "'\(atText)' is not an RFC 3339 time")
        }
        self.init(
            type: type, runId: try required(fields.runId, "runId"), jobId: try required(fields.jobId, "jobId"),
            hostId: try required(fields.hostId, "hostId"),
            dispatchEpoch: try requiredInt(fields.dispatchEpoch, "dispatchEpoch"),
            sequence: try requiredInt(fields.sequence, "sequence"), at: at,
            exitCode: try fields.exitCode.int(field: "exitCode", range: int32),
            errorSummary: try fields.errorSummary.string(field: "errorSummary")?.withoutNUL,
            reason: try fields.reason.string(field: "reason")?.withoutNUL)
    }

    /// The signed message for `agentjobs.run-events`, keyed by run id. Its id is stable for a
    /// (run, epoch, sequence), so a re-sent event deduplicates with the first.
    public func message(signedWith key: HostEventKey) throws -> OutgoingMessage {
        let envelope = WireEnvelope(
            id: "\(runId):\(dispatchEpoch):\(sequence)", source: WireEnvelope.hostSource(hostId), type: versionedType,
            time: at, subject: runId, key: runId)
        return key.signedMessage(topic: Topic.runEvents, envelope: envelope, body: try WireJSON.encode(self))
    }
}

/// A host's periodic heartbeat on `agentjobs.host-events` (keyed by host id).
public struct HostHeartbeat: WireBody, Hashable {
    public static let type = "agentjobs.host.heartbeat"
    public static let version = 1
    /// The most active runs one heartbeat may list.
    public static let maxActiveRuns = 10_000

    /// One run the orchestrator is responsible for right now.
    public struct ActiveRun: Sendable, Hashable, Codable {
        public var runId: String
        public var dispatchEpoch: Int
        /// `queued` (accepted, not launched yet) or `running`.
        public var status: RunStatus

        public init(runId: String, dispatchEpoch: Int, status: RunStatus) {
            self.runId = runId
            self.dispatchEpoch = dispatchEpoch
            self.status = status
        }
    }

    public var hostId: String
    public var sentAt: Date
    /// The orchestrator's version string.
    public var version: String
    public var managedAgents: [AgentType]
    public var activeRuns: [ActiveRun]
    /// The driver in use (`docker` or `process`).
    public var driver: String
    /// The host's concurrency limit (`AGENTJOBS_MAX_CONCURRENT_RUNS`); absent for none, and from
    /// orchestrators of earlier versions.
    public var maxConcurrentRuns: Int?

    public init(
        hostId: String, sentAt: Date, version: String, managedAgents: [AgentType], activeRuns: [ActiveRun],
        driver: String, maxConcurrentRuns: Int? = nil
    ) {
        self.hostId = hostId
        self.sentAt = sentAt
        self.version = version
        self.managedAgents = managedAgents
        self.activeRuns = activeRuns
        self.driver = driver
        self.maxConcurrentRuns = maxConcurrentRuns
    }

    /// The signed message for `agentjobs.host-events`.
    public func message(signedWith key: HostEventKey) throws -> OutgoingMessage {
        let envelope = WireEnvelope(
            id: "\(hostId):hb:\(Int64((sentAt.timeIntervalSince1970 * 1000).rounded()))",
            source: WireEnvelope.hostSource(hostId),
            type: Self.versionedType, time: sentAt, subject: hostId, key: hostId)
        return key.signedMessage(topic: Topic.hostEvents, envelope: envelope, body: try WireJSON.encode(self))
    }
}

/// The authoritative run record the aggregator publishes on `agentjobs.run-status` (keyed by run
/// id, compacted) after each applied change, for downstream consumers.
public struct RunStatusRecord: WireBody, Hashable {
    public static let type = "agentjobs.run.status"
    public static let version = 1

    public var run: Run
    /// Increases with every applied change of this run, so consumers can keep the newest.
    public var revision: Int

    public init(run: Run, revision: Int) {
        self.run = run
        self.revision = revision
    }

    /// The (unsigned) message for `agentjobs.run-status`.
    public func message(at now: Date) -> OutgoingMessage {
        let envelope = WireEnvelope(
            id: "\(run.id):status:\(revision)", source: WireEnvelope.controlPlaneSource, type: Self.versionedType,
            time: now, subject: run.id, key: run.id)
        return OutgoingMessage(topic: Topic.runStatus, envelope: envelope, body: jsonBytes, signature: nil)
    }

    /// The body: what `WireJSON.encode(self)` writes (sorted keys, absent optionals left out), written
    /// by hand because the aggregator publishes one record per applied event and `JSONEncoder` was
    /// the largest cost of applying one (~20 µs of ~80).
    public var jsonBytes: [UInt8] {
        var writer = JSONWriter()
        writer.beginObject()
        writer.key("revision")
        writer.int(revision)
        writer.key("run")
        run.writeJSON(into: &writer)
        writer.endObject()
        return writer.bytes
    }
}
