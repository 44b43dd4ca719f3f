#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Writes JSON straight into bytes, for the few values on the trigger hot path (the dispatch
/// payload, the parameters column, the API's run resource).
///
/// Foundation's `JSONEncoder` costs ~25 µs per small value on Linux; writing the bytes directly
/// costs about a microsecond. The output is byte for byte what `JSONEncoder` with `.sortedKeys`
/// and ``ISO8601`` dates produces (escaped `/`, `\uXXXX` for other control characters, non-ASCII
/// as raw UTF-8), so stored and signed values do not change shape; the callers write their keys
/// in sorted order themselves, and tests compare against `JSONEncoder`.
public struct JSONWriter: Sendable {
    /// The JSON written so far.
    public private(set) var bytes: [UInt8]
    /// Whether the innermost open object or array has no member yet.
    private var first = true

    public init(capacity: Int = 512) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Opens an object; members follow with ``key(_:)`` and a value.
    public mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        first = true
    }

    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        first = false
    }

    public mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
        first = true
    }

    public mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        first = false
    }

    /// Starts an object member; `name` must need no escaping (our own ASCII field names).
    public mutating func key(_ name: StaticString) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
        first = true
    }

    /// Starts an object member whose name may need escaping (a log line's metadata key).
    public mutating func key(escaping name: String) {
        separate()
        Self.appendEscaped(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        first = true
    }

    /// An array element or a member's value.
    public mutating func string(_ value: String) {
        separate()
        Self.appendEscaped(value, to: &bytes)
        first = false
    }

    public mutating func optionalString(_ value: String?) {
        if let value { string(value) } else { null() }
    }

    public mutating func int(_ value: Int) {
        separate()
        if value == 0 {
            bytes.append(UInt8(ascii: "0"))
        } else {
            var digits: [UInt8] = []
            var magnitude = value.magnitude
            while magnitude > 0 {
                digits.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
                magnitude /= 10
            }
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            bytes.append(contentsOf: digits.reversed())
        }
        first = false
    }

    /// A finite number: whole numbers as integers, others in Swift's shortest round-trip form.
    public mutating func number(_ value: Double) {
        if value.rounded() == value, value.magnitude < 1e15 {
            int(Int(value))
        } else {
            separate()
            bytes.append(contentsOf: Array(String(value.isFinite ? value : 0).utf8))
            first = false
        }
    }

    public mutating func optionalInt(_ value: Int?) {
        if let value { int(value) } else { null() }
    }

    public mutating func null() {
        separate()
        bytes.append(contentsOf: [UInt8(ascii: "n"), UInt8(ascii: "u"), UInt8(ascii: "l"), UInt8(ascii: "l")])
        first = false
    }

    /// A time as the wire's RFC 3339 string (``ISO8601/format(_:)``).
    public mutating func date(_ value: Date) { string(ISO8601.format(value)) }

    public mutating func optionalDate(_ value: Date?) {
        if let value { date(value) } else { null() }
    }

    private mutating func separate() {
        if !first { bytes.append(UInt8(ascii: ",")) }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// `value` as a JSON string literal, escaped the way `JSONEncoder` does.
    static func appendEscaped(_ value: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        let utf8 = value.utf8
        func needsEscaping(_ byte: UInt8) -> Bool {
            byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "/")
        }
        // Scanned in place: through the string's iterator the check cost more than the copy.
        let plain =
            utf8.withContiguousStorageIfAvailable { !$0.contains(where: needsEscaping) }
            ?? !utf8.contains(where: needsEscaping)
        if plain {
            // The common case: nothing to escape, so the bytes go in as they are.
            bytes.append(contentsOf: utf8)
            bytes.append(UInt8(ascii: "\""))
            return
        }
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "/"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "/")])
            case 0x08: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                bytes.append(contentsOf: [
                    UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                    hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)],
                ])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
