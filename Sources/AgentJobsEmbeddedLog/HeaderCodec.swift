import AgentJobsCore

/// The embedded log's header column (`log_messages.headers`): per header a 4-byte big-endian
/// name length and the name, then a 4-byte
/// big-endian value length (-1 for a header without a value) and the value. Order and repeated
/// names are kept.
enum HeaderCodec {
    static func encode(_ headers: [MessageHeader]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headers.reduce(0) { $0 + 8 + $1.key.utf8.count + ($1.value?.count ?? 0) })
        func append(_ length: Int32) {
            let value = UInt32(bitPattern: length)
            bytes.append(UInt8(truncatingIfNeeded: value >> 24))
            bytes.append(UInt8(truncatingIfNeeded: value >> 16))
            bytes.append(UInt8(truncatingIfNeeded: value >> 8))
            bytes.append(UInt8(truncatingIfNeeded: value))
        }
        for header in headers {
            append(Int32(clamping: header.key.utf8.count))
            bytes.append(contentsOf: header.key.utf8)
            if let value = header.value {
                append(Int32(clamping: value.count))
                bytes += value
            } else {
                append(-1)
            }
        }
        return bytes
    }

    /// Decodes what ``encode(_:)`` wrote, or `nil` for a blob it cannot have written (truncated or
    /// damaged): a message must not reach a consumer with part of its headers.
    static func decode(_ bytes: [UInt8]) -> [MessageHeader]? {
        var headers: [MessageHeader] = []
        var index = 0
        func length() -> Int32? {
            guard index + 4 <= bytes.count else { return nil }
            let value = bytes[index..<index + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            index += 4
            return Int32(bitPattern: value)
        }
        while index < bytes.count {
            guard let nameLength = length(), nameLength >= 0, index + Int(nameLength) <= bytes.count else { return nil }
            let name = String(decoding: bytes[index..<index + Int(nameLength)], as: UTF8.self)
            index += Int(nameLength)
            guard let valueLength = length() else { return nil }
            if valueLength < 0 {
                headers.append(MessageHeader(key: name, value: nil))
            } else {
                guard index + Int(valueLength) <= bytes.count else { return nil }
                headers.append(MessageHeader(key: name, value: Array(bytes[index..<index + Int(valueLength)])))
                index += Int(valueLength)
            }
        }
        return headers
    }
}
