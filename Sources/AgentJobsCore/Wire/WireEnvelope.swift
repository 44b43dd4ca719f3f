#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// The envelope every AgentJobs message travels in: a JSON body plus CloudEvents 1.0 attributes in
// Kafka binary mode (`ce_*` headers), so that downstream tools can route and inspect messages
// without knowing our types. The body's schema version is part of `ce_type`
// (`agentjobs.run.dispatch.v1`): a consumer that does not know a type or version dead-letters the
// message instead of guessing. See docs/wire-format.md.

/// A message body of the wire contract.
public protocol WireBody: Sendable, Codable {
    /// The CloudEvents type without version, e.g. `agentjobs.run.dispatch`.
    static var type: String { get }
    /// The schema version of this body; bumped on incompatible changes.
    static var version: Int { get }
}

extension WireBody {
    /// The full `ce_type`, e.g. `agentjobs.run.dispatch.v1`.
    public static var versionedType: String { "\(type).v\(version)" }
}

/// The header names of the envelope.
public enum WireHeader {
    public static let specVersion = "ce_specversion"
    public static let id = "ce_id"
    public static let source = "ce_source"
    public static let type = "ce_type"
    public static let time = "ce_time"
    /// The run id (or host id for heartbeats) the message is about.
    public static let subject = "ce_subject"
    public static let contentType = "content-type"
    /// `ed25519:<base64>` on dispatch commands, `hmac-sha256:<base64>` on host events.
    public static let signature = "agentjobs_signature"
    /// On dead letters: why the message could not be used.
    public static let deadLetterReason = "agentjobs_dead_letter_reason"
    /// On dead letters: where the message was read.
    public static let originalTopic = "agentjobs_original_topic"
    public static let originalPartition = "agentjobs_original_partition"
    public static let originalOffset = "agentjobs_original_offset"
}

/// The envelope's attributes, read from or written to `ce_*` headers.
public struct WireEnvelope: Sendable, Hashable {
    /// Unique per message; a redelivered message keeps its id, so consumers can deduplicate by it.
    public var id: String
    /// Who produced it: `agentjobs://control-plane` or `agentjobs://hosts/<host-id>`.
    public var source: String
    /// The versioned type, e.g. `agentjobs.run.started.v1`.
    public var type: String
    public var time: Date
    /// The run id (host id for heartbeats).
    public var subject: String
    /// The partitioning key.
    public var key: String

    public init(id: String, source: String, type: String, time: Date, subject: String, key: String) {
        self.id = id
        self.source = source
        self.type = type
        self.time = time
        self.subject = subject
        self.key = key
    }

    /// The `ce_source` of messages the control plane produces.
    public static let controlPlaneSource = "agentjobs://control-plane"
    /// The `ce_source` of messages a host's orchestrator produces.
    public static func hostSource(_ hostId: String) -> String { "agentjobs://hosts/\(hostId)" }

    /// The bytes a signature covers: every attribute a forger could want to change, and the body.
    public func signedBytes(body: [UInt8]) -> [UInt8] {
        var bytes = signedAttributes(reservingForBody: body.count)
        bytes.append(contentsOf: body)
        return bytes
    }

    /// The start of ``signedBytes(body:)``: the attributes, each followed by a newline (hashed on its
    /// own where a hash can take the body separately).
    func signedAttributes(reservingForBody bodyCount: Int = 0) -> [UInt8] {
        var bytes: [UInt8] = []
        appendSignedAttributes(to: &bytes, time: ISO8601.utf8(time), reservingForBody: bodyCount)
        return bytes
    }

    /// Appends ``signedAttributes(reservingForBody:)`` to `bytes`.
    /// - Parameter time: `time` formatted by `ISO8601.utf8`.
    func appendSignedAttributes(to bytes: inout [UInt8], time: [UInt8], reservingForBody bodyCount: Int = 0) {
        bytes.reserveCapacity(
            bytes.count + 18 + type.utf8.count + id.utf8.count + source.utf8.count + subject.utf8.count
                + key.utf8.count + time.count + 6 + bodyCount)
        bytes.append(contentsOf: "agentjobs-wire-v1\n".utf8)
        func line(_ attribute: some Sequence<UInt8>) {
            bytes.append(contentsOf: attribute)
            bytes.append(UInt8(ascii: "\n"))
        }
        line(type.utf8)
        line(id.utf8)
        line(source.utf8)
        line(subject.utf8)
        line(key.utf8)
        line(time)
    }

    /// The `ce_*` headers and the signature header.
    /// - Parameters:
    ///   - signature: The `agentjobs_signature` value's UTF-8 bytes, if the message is signed.
    ///   - time: `time` formatted by `ISO8601.utf8`.
    func headers(signature: [UInt8]?, time: [UInt8]) -> [MessageHeader] {
        var headers: [MessageHeader] = []
        headers.reserveCapacity(8)
        headers.append(MessageHeader(key: WireHeader.specVersion, value: HeaderValue.specVersion))
        headers.append(MessageHeader(key: WireHeader.id, value: id))
        headers.append(
            MessageHeader(
                key: WireHeader.source,
                value: source == Self.controlPlaneSource ? HeaderValue.controlPlane : Array(source.utf8)))
        headers.append(MessageHeader(key: WireHeader.type, value: HeaderValue.type(type)))
        headers.append(MessageHeader(key: WireHeader.time, value: time))
        headers.append(MessageHeader(key: WireHeader.subject, value: subject))
        headers.append(MessageHeader(key: WireHeader.contentType, value: HeaderValue.json))
        if let signature { headers.append(MessageHeader(key: WireHeader.signature, value: signature)) }
        return headers
    }

    /// Header values every message shares, made once.
    private enum HeaderValue {
        static let specVersion = Array("1.0".utf8)
        static let json = Array("application/json".utf8)
        static let controlPlane = Array(WireEnvelope.controlPlaneSource.utf8)
        /// The `ce_type` value: shared for the relay's types, made for others.
        static func type(_ type: String) -> [UInt8] {
            OutboxMessage.relayTypes.first { $0.versioned == type }?.header ?? Array(type.utf8)
        }
    }
}

/// Why an incoming message could not be used; the reason goes into the dead letter's header.
public struct WireError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case missingHeader = "missing_header"
        case unsupportedSpecVersion = "unsupported_spec_version"
        case unknownType = "unknown_type"
        case unknownVersion = "unknown_version"
        case undecodableBody = "undecodable_body"
        case badSignature = "bad_signature"
        case wrongHost = "wrong_host"
        case unknownHost = "unknown_host"
        /// The host's credential was revoked by an administrator.
        case revokedHost = "revoked_host"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`, as written to the dead-letter reason header.
    public var description: String { "\(code.rawValue): \(message)" }
}

/// One message as read off the wire: its envelope, raw body and signature, not yet trusted.
public struct WireMessage: Sendable, Hashable {
    public var envelope: WireEnvelope
    public var body: [UInt8]
    /// The `agentjobs_signature` header, if any.
    public var signature: String?

    /// The unversioned type and the version parsed from `ce_type` (`agentjobs.run.started`, 1).
    public var typeAndVersion: (type: String, version: Int)? {
        guard let dot = envelope.type.lastIndex(of: "."),
            envelope.type[envelope.type.index(after: dot)...].hasPrefix("v"),
            let version = Int(envelope.type[envelope.type.index(dot, offsetBy: 2)...])
        else { return nil }
        return (String(envelope.type[..<dot]), version)
    }

    /// Reads the envelope from a message's headers.
    /// - Throws: ``WireError`` when a required header is missing or the spec version is not 1.0.
    public init(_ message: IncomingMessage) throws(WireError) {
        func required(_ name: String) throws(WireError) -> String {
            guard let value = message.header(name)?.stringValue, !value.isEmpty else {
                throw WireError(.missingHeader, "header \(name) is missing")
            }
            return value
        }
        let spec = try required(WireHeader.specVersion)
        guard spec == "1.0" else { throw WireError(.unsupportedSpecVersion, "ce_specversion \(spec) is not 1.0") }
        let timeText = try required(WireHeader.time)
        guard let time = ISO8601.parse(timeText) else {
            throw WireError(.missingHeader, "ce_time '\(timeText)' is not an RFC 3339 time")
        }
        envelope = WireEnvelope(
            id: try required(WireHeader.id), source: try required(WireHeader.source),
            type: try required(WireHeader.type),
            time: time, subject: try required(WireHeader.subject), key: message.keyString ?? "")
        body = message.value
        signature = message.header(WireHeader.signature)?.stringValue
    }

    /// Decodes the body as `Body`, checking that `ce_type` names exactly this type and version.
    /// - Throws: ``WireError`` `unknownType`, `unknownVersion` or `undecodableBody`.
    public func decode<Body: WireBody>(_: Body.Type) throws(WireError) -> Body {
        guard let parsed = typeAndVersion, parsed.type == Body.type else {
            throw WireError(.unknownType, "ce_type \(envelope.type) is not \(Body.versionedType)")
        }
        guard parsed.version == Body.version else {
            throw WireError(.unknownVersion, "\(envelope.type): this build reads version \(Body.version) only")
        }
        do {
            return try WireJSON.decoder.decode(Body.self, from: Data(body))
        } catch {
            throw WireError(.undecodableBody, "\(envelope.type) body does not decode: \(error)")
        }
    }
}

/// The JSON coding of wire bodies: sorted keys, RFC 3339 times with milliseconds.
public enum WireJSON {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(ISO8601.format(date))
        }
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = ISO8601.parse(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "'\(text)' is not an RFC 3339 time")
            }
            return date
        }
        return decoder
    }

    /// Encodes a body.
    /// - Throws: `EncodingError` (only for values that cannot be JSON, which our bodies never are).
    public static func encode<Body: Encodable>(_ body: Body) throws -> [UInt8] {
        Array(try encoder.encode(body))
    }
}

extension OutgoingMessage {
    /// A message in the wire envelope.
    /// - Parameters:
    ///   - topic: The destination topic.
    ///   - envelope: The attributes; `envelope.key` becomes the message key.
    ///   - body: The JSON body.
    ///   - signature: The `agentjobs_signature` header value, if the message is signed.
    public init(topic: String, envelope: WireEnvelope, body: [UInt8], signature: String?) {
        self.init(
            topic: topic, envelope: envelope, time: ISO8601.utf8(envelope.time), body: body,
            signature: signature.map { Array($0.utf8) })
    }

    /// The same, with the envelope's time formatted by `ISO8601.utf8` and the signature as bytes.
    init(topic: String, envelope: WireEnvelope, time: [UInt8], body: [UInt8], signature: [UInt8]?) {
        self.init(
            topic: topic, key: envelope.key, value: body, headers: envelope.headers(signature: signature, time: time))
    }
}

extension OutgoingMessage {
    /// The dead letter for a message that could not be used: the original key, body and headers,
    /// plus the reason and where it was read. Consumers publish it to `agentjobs.dead-letter` and
    /// move on.
    public static func deadLetter(for message: IncomingMessage, reason: String) -> OutgoingMessage {
        var headers = message.headers.filter {
            !$0.key.hasPrefix("agentjobs_dead_letter") && !$0.key.hasPrefix("agentjobs_original")
        }
        headers.append(MessageHeader(key: WireHeader.deadLetterReason, value: String(reason.prefix(1024))))
        headers.append(MessageHeader(key: WireHeader.originalTopic, value: message.topic))
        headers.append(MessageHeader(key: WireHeader.originalPartition, value: String(message.partition)))
        headers.append(MessageHeader(key: WireHeader.originalOffset, value: String(message.offset)))
        return OutgoingMessage(topic: Topic.deadLetter, key: message.key, value: message.value, headers: headers)
    }
}
