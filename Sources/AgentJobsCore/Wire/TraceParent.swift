/// The W3C trace context (`traceparent`, https://www.w3.org/TR/trace-context/) that follows a run
/// from the request or schedule tick that created it: stored with its outbox row, sent as a header
/// of its dispatch, journaled by the host and sent as a header of its events.
///
/// It is not signed and proves nothing: a header that is not a well-formed `traceparent` is
/// dropped where it is read (``validated(_:)``), and a forged one can only misfile spans.
public enum TraceParent {
    /// The header's name, as OpenTelemetry's messaging conventions use it on Kafka.
    public static let header = "traceparent"

    /// `value` when it is a version-00 `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all
    /// zero), else nil.
    public static func validated(_ value: String?) -> String? {
        guard let value else { return nil }
        let bytes = Array(value.utf8)
        guard bytes.count == 55, bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"),
            bytes[52] == UInt8(ascii: "-"), bytes[0] == UInt8(ascii: "0"), bytes[1] == UInt8(ascii: "0")
        else { return nil }
        let traceId = bytes[3..<35]
        let spanId = bytes[36..<52]
        let flags = bytes[53..<55]
        guard (traceId + spanId + flags).allSatisfy(isLowerHex), traceId.contains(where: { $0 != UInt8(ascii: "0") }),
            spanId.contains(where: { $0 != UInt8(ascii: "0") })
        else { return nil }
        return value
    }

    /// The trace context a message carries, if any and well formed.
    public static func of(_ message: IncomingMessage) -> String? {
        validated(message.header(header)?.value.map { String(decoding: $0, as: UTF8.self) })
    }

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }
}

extension OutgoingMessage {
    /// This message with `traceParent` as its `traceparent` header (unchanged when nil).
    public func tracing(_ traceParent: String?) -> OutgoingMessage {
        guard let traceParent else { return self }
        var message = self
        message.headers.append(MessageHeader(key: TraceParent.header, value: Array(traceParent.utf8)))
        return message
    }
}
