import Crypto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What a webhook subscription can be told about: a run's end, or a host judged lost.
public enum WebhookEvent: String, Sendable, Codable, CaseIterable, Hashable {
    case runSucceeded = "run.succeeded"
    case runFailed = "run.failed"
    case runTimedOut = "run.timed_out"
    case runCanceled = "run.canceled"
    /// Host tracking judged a host lost (silent for the lost-after time): once per silence.
    case hostLost = "host.lost"

    /// The stored form of a list of events: their names, comma-separated.
    public static func storedForm(_ events: [WebhookEvent]) -> String { events.map(\.rawValue).joined(separator: ",") }

    /// Reads ``storedForm(_:)`` back; nil when a name is not known.
    public static func parseStored(_ text: String) -> [WebhookEvent]? {
        var events: [WebhookEvent] = []
        for name in text.split(separator: ",") {
            guard let event = WebhookEvent(rawValue: String(name)) else { return nil }
            events.append(event)
        }
        return events.isEmpty ? nil : events
    }

    /// The event of a run that ended as `status`; nil for an active status.
    public init?(endOf status: RunStatus) {
        switch status {
        case .succeeded: self = .runSucceeded
        case .failed: self = .runFailed
        case .timedOut: self = .runTimedOut
        case .canceled: self = .runCanceled
        case .queued, .running: return nil
        }
    }
}

/// How a delivery's body is written.
public enum WebhookFormat: String, Sendable, Codable, CaseIterable, Hashable {
    /// A CloudEvents 1.0 JSON event whose `data` is `{"run": <run record>}`.
    case cloudevents
    /// `{"text": "..."}`, what a Slack (or Mattermost, Teams workflow) incoming webhook accepts.
    case slack
}

/// A webhook subscription: where to send which run ends, signed with its secret.
public struct Webhook: Sendable, Hashable {
    public var id: String
    public var url: String
    public var events: [WebhookEvent]
    /// Only runs of this job; nil for every job (and hosts: a subscription to one job's runs
    /// is never told of a host).
    public var jobId: String?
    public var format: WebhookFormat
    public var createdAt: Date

    public init(
        id: String, url: String, events: [WebhookEvent], jobId: String?, format: WebhookFormat, createdAt: Date
    ) {
        self.id = id
        self.url = url
        self.events = events
        self.jobId = jobId
        self.format = format
        self.createdAt = createdAt
    }

    /// Whether `event` about a run of `jobId` (nil: a host event) is sent here.
    public func wants(_ event: WebhookEvent, jobId: String?) -> Bool {
        events.contains(event) && (self.jobId == nil || self.jobId == jobId)
    }
}

/// A create request (`POST /api/v1/webhooks`), validated.
public struct WebhookDefinition: Sendable, Hashable {
    public var url: String
    public var events: [WebhookEvent]
    public var jobId: String?
    public var format: WebhookFormat
    /// The signing secret the caller chose; nil to have one generated.
    public var secret: String?

    public init(
        url: String, events: [WebhookEvent], jobId: String? = nil, format: WebhookFormat = .cloudevents,
        secret: String? = nil
    ) {
        self.url = url
        self.events = events
        self.jobId = jobId
        self.format = format
        self.secret = secret
    }

    /// The subscription this request creates, with a new id, and its signing secret (the one the
    /// caller chose, or a generated one).
    public func subscription(createdAt now: Date) -> (webhook: Webhook, secret: String) {
        let webhook = Webhook(
            id: Identifier.make("whk"), url: url, events: events, jobId: jobId, format: format, createdAt: now)
        return (webhook, secret ?? Secret.generate(prefix: "whsec").value)
    }

    /// - Throws: ``ValidationError`` naming the first bad field.
    public static func parse(_ body: JSONValue) throws -> WebhookDefinition {
        var reader = try JSONObjectReader(body)
        let url = try reader.requiredString("url").trimmingWhitespace()
        try checkURL(url)
        guard let names = try reader.stringArray("events"), !names.isEmpty else {
            throw ValidationError(
                field: "events",
                message:
                    "is required: a non-empty list of \(WebhookEvent.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var events: [WebhookEvent] = []
        for (index, name) in names.enumerated() {
            guard let event = WebhookEvent(rawValue: name) else {
                throw ValidationError(
                    field: "events[\(index)]",
                    message:
                        "unknown event '\(name)'; expected one of \(WebhookEvent.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            if !events.contains(event) { events.append(event) }
        }
        let jobId = try reader.string("jobId")?.trimmingWhitespace()
        if let jobId, jobId.isEmpty { throw ValidationError(field: "jobId", message: "must not be empty") }
        if jobId != nil, let index = events.firstIndex(of: .hostLost) {
            throw ValidationError(
                field: "events[\(index)]",
                message: "host.lost is not about a job's runs: subscribe to it in a subscription without jobId")
        }
        var format = WebhookFormat.cloudevents
        if let name = try reader.string("format") {
            guard let parsed = WebhookFormat(rawValue: name) else {
                throw ValidationError(field: "format", message: "must be 'cloudevents' or 'slack'")
            }
            format = parsed
        }
        let secret = try reader.string("secret")
        if let secret, !(16...256).contains(secret.unicodeScalars.count) {
            throw ValidationError(
                field: "secret", message: "must be 16 to 256 characters (or left out to have one generated)")
        }
        try reader.rejectUnknownFields()
        return WebhookDefinition(url: url, events: events, jobId: jobId, format: format, secret: secret)
    }

    /// An `http` or `https` URL with a host and no credentials, at most 2,048 bytes.
    static func checkURL(_ url: String) throws {
        guard url.utf8.count <= 2048 else { throw ValidationError(field: "url", message: "must be at most 2048 bytes") }
        guard let parts = URLComponents(string: url), let scheme = parts.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = parts.host, !host.isEmpty
        else {
            throw ValidationError(field: "url", message: "must be an http:// or https:// URL with a host")
        }
        guard parts.user == nil && parts.password == nil else {
            throw ValidationError(
                field: "url",
                message:
                    "must not carry credentials (user:password@): the URL is shown to every admin; verify requests by their signature instead"
            )
        }
    }
}

/// Where a delivery stands.
public enum WebhookDeliveryStatus: String, Sendable, Codable, CaseIterable, Hashable {
    /// Not yet answered with 2xx; tried again at `nextAttemptAt`.
    case pending
    /// Answered with 2xx.
    case delivered
    /// Given up: not delivered within ``WebhookRetry/giveUpAfter`` of being written.
    case failed
}

/// One event for one subscription, and what became of sending it.
public struct WebhookDelivery: Sendable, Hashable {
    public var id: String
    public var webhookId: String
    public var event: WebhookEvent
    /// What the event is about: the run's id, or the host's for `host.lost`.
    public var subject: String
    public var status: WebhookDeliveryStatus
    public var attempts: Int
    public var createdAt: Date
    public var nextAttemptAt: Date?
    public var lastAttemptAt: Date?
    /// The HTTP status of the last answer; nil when there was none (timeout, refused connection).
    public var lastStatusCode: Int?
    /// Why the last attempt failed, in a sentence.
    public var lastError: String?
    public var deliveredAt: Date?

    public init(
        id: String, webhookId: String, event: WebhookEvent, subject: String, status: WebhookDeliveryStatus,
        attempts: Int, createdAt: Date, nextAttemptAt: Date?, lastAttemptAt: Date?, lastStatusCode: Int?,
        lastError: String?, deliveredAt: Date?
    ) {
        self.id = id
        self.webhookId = webhookId
        self.event = event
        self.subject = subject
        self.status = status
        self.attempts = attempts
        self.createdAt = createdAt
        self.nextAttemptAt = nextAttemptAt
        self.lastAttemptAt = lastAttemptAt
        self.lastStatusCode = lastStatusCode
        self.lastError = lastError
        self.deliveredAt = deliveredAt
    }
}

/// A delivery to write, in the transaction that records what it tells; the stores write these and
/// decide nothing about them.
public struct NewWebhookDelivery: Sendable, Hashable {
    public var id: String
    public var webhookId: String
    public var event: WebhookEvent
    /// The run or the host the event is about.
    public var subjectId: String
    public var body: [UInt8]

    /// The deliveries of `run`'s end to the subscriptions that want it (none when its status is
    /// not one subscriptions can ask for).
    public static func end(of run: Run, to webhooks: [Webhook], at now: Date) -> [NewWebhookDelivery] {
        guard let event = WebhookEvent(endOf: run.status) else { return [] }
        return webhooks.filter { $0.wants(event, jobId: run.jobId) }.map { webhook in
            let id = Identifier.makeTimeOrdered("whd", at: now)
            return NewWebhookDelivery(
                id: id, webhookId: webhook.id, event: event, subjectId: run.id,
                body: WebhookBody.make(deliveryId: id, event: event, run: run, format: webhook.format, at: now))
        }
    }

    /// The deliveries of `host.lost` for `host` to the subscriptions that want it.
    public static func loss(of host: Host, to webhooks: [Webhook], at now: Date) -> [NewWebhookDelivery] {
        webhooks.filter { $0.wants(.hostLost, jobId: nil) }.map { webhook in
            let id = Identifier.makeTimeOrdered("whd", at: now)
            return NewWebhookDelivery(
                id: id, webhookId: webhook.id, event: .hostLost, subjectId: host.id,
                body: WebhookBody.make(deliveryId: id, lost: host, format: webhook.format, at: now))
        }
    }
}

/// A delivery claimed for sending: what to send where, and the attempt it is.
public struct WebhookSend: Sendable, Hashable {
    public var deliveryId: String
    public var url: String
    public var secret: String
    public var format: WebhookFormat
    public var body: [UInt8]
    /// The number of this attempt (1 for the first).
    public var attempt: Int
    public var createdAt: Date

    public init(
        deliveryId: String, url: String, secret: String, format: WebhookFormat, body: [UInt8], attempt: Int,
        createdAt: Date
    ) {
        self.deliveryId = deliveryId
        self.url = url
        self.secret = secret
        self.format = format
        self.body = body
        self.attempt = attempt
        self.createdAt = createdAt
    }
}

/// When a delivery that was not answered with 2xx is tried again.
public enum WebhookRetry {
    /// Waits after the 1st, 2nd, ... failed attempt; the last repeats.
    public static let delays: [Duration] = [
        .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(900), .seconds(1800), .seconds(3600),
    ]
    /// A delivery not delivered this long after it was written is given up (`failed`).
    public static let giveUpAfter: Duration = .seconds(24 * 3600)

    /// When attempt `attempt` (1 for the first) having failed at `now`, the next one is due; nil to give up.
    public static func nextAttempt(after attempt: Int, failedAt now: Date, createdAt: Date, delays: [Duration] = delays)
        -> Date?
    {
        let wait = delays[min(max(0, attempt - 1), delays.count - 1)]
        let next = now.addingTimeInterval(TimeInterval(wait.components.seconds))
        return next.timeIntervalSince(createdAt) > TimeInterval(giveUpAfter.components.seconds) ? nil : next
    }
}

/// The bytes sent for an event, written when it is recorded (so every attempt sends the same).
public enum WebhookBody {
    /// A run's end.
    public static func make(
        deliveryId: String, event: WebhookEvent, run: Run, format: WebhookFormat, at now: Date
    ) -> [UInt8] {
        switch format {
        case .cloudevents:
            cloudEvent(deliveryId: deliveryId, event: event, subject: run.id, at: now) { writer in
                writer.key("run")
                run.writeJSON(into: &writer)
            }
        case .slack: slack(slackText(event: event, run: run))
        }
    }

    /// A host judged lost.
    public static func make(deliveryId: String, lost host: Host, format: WebhookFormat, at now: Date) -> [UInt8] {
        switch format {
        case .cloudevents:
            cloudEvent(deliveryId: deliveryId, event: .hostLost, subject: host.id, at: now) { writer in
                writer.key("host")
                writer.beginObject()
                writer.key("id")
                writer.string(host.id)
                writer.key("lastSeenAt")
                writer.optionalDate(host.lastSeenAt)
                writer.key("managedAgents")
                writer.beginArray()
                for agent in host.managedAgents { writer.string(agent.rawValue) }
                writer.endArray()
                writer.key("name")
                writer.string(host.name)
                writer.endObject()
            }
        case .slack:
            slack(
                "AgentJobs: host \(host.name) (\(host.id)) is lost: no heartbeat since "
                    + (host.lastSeenAt.map(ISO8601.format) ?? "it registered")
                    + "; its running runs failed as host lost, and its queued runs wait for it until their queue deadline"
            )
        }
    }

    /// A CloudEvents 1.0 structured event, keys sorted; `data` writes the members of its object.
    private static func cloudEvent(
        deliveryId: String, event: WebhookEvent, subject: String, at now: Date, data: (inout JSONWriter) -> Void
    ) -> [UInt8] {
        var writer = JSONWriter(capacity: 1024)
        writer.beginObject()
        writer.key("data")
        writer.beginObject()
        data(&writer)
        writer.endObject()
        writer.key("datacontenttype")
        writer.string("application/json")
        writer.key("id")
        writer.string(deliveryId)
        writer.key("source")
        writer.string(WireEnvelope.controlPlaneSource)
        writer.key("specversion")
        writer.string("1.0")
        writer.key("subject")
        writer.string(subject)
        writer.key("time")
        writer.date(now)
        writer.key("type")
        writer.string("agentjobs.\(event.rawValue)")
        writer.endObject()
        return writer.bytes
    }

    /// `{"text": ...}`, with `&`, `<` and `>` escaped as Slack's message format asks.
    private static func slack(_ text: String) -> [UInt8] {
        var writer = JSONWriter(capacity: 512)
        writer.beginObject()
        writer.key("text")
        writer.string(text.replacing("&", with: "&amp;").replacing("<", with: "&lt;").replacing(">", with: "&gt;"))
        writer.endObject()
        return writer.bytes
    }

    static func slackText(event: WebhookEvent, run: Run) -> String {
        let outcome: String
        switch event {
        case .runSucceeded: outcome = "succeeded"
        case .runFailed: outcome = "failed" + (run.exitCode.map { " (exit \($0))" } ?? "")
        case .runTimedOut: outcome = "timed out"
        case .runCanceled: outcome = "was canceled"
        case .hostLost: outcome = "ended"
        }
        var text = "AgentJobs: run \(run.id) of job \(run.jobName) on host \(run.hostId) \(outcome)"
        if run.maxAttempts > 1 { text += ", attempt \(run.attempt) of \(run.maxAttempts)" }
        if let summary = run.errorSummary, event != .runSucceeded {
            text += ": " + String(summary.prefix(500))
        }
        return text
    }
}

/// The signature of a delivery, as GitHub and Stripe sign theirs: HMAC-SHA256 keyed with the
/// subscription's secret over `"<timestamp>.<body>"`, hex, sent as
/// `AgentJobs-Signature: t=<timestamp>,v1=<hex>`. The timestamp (Unix seconds) lets a receiver
/// refuse replays of old requests.
public enum WebhookSignature {
    public static let header = "AgentJobs-Signature"

    public static func value(secret: String, timestamp: Int64, body: [UInt8]) -> String {
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: Array(secret.utf8)))
        hmac.update(data: Array("\(timestamp).".utf8))
        hmac.update(data: body)
        let hex = hmac.finalize().map { byte in
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]], as: UTF8.self)
        }.joined()
        return "t=\(timestamp),v1=\(hex)"
    }
}
