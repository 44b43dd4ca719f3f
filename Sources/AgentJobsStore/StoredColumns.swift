import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Opaque page cursors, the same in every store: the position of the last item of a page.
public enum PageCursor {
    /// The position of a run, job or audit entry: its sequence (`c…`).
    public static func encode(_ sequence: Int64) -> String { "c" + String(sequence, radix: 36) }

    public static func decode(_ cursor: String) -> Int64? {
        guard cursor.first == "c", let value = Int64(cursor.dropFirst(), radix: 36), value > 0 else { return nil }
        return value
    }

    /// The position of a host in the name order: its name and id (`h<name, base64url>.<id>`).
    public static func encode(name: String, id: String) -> String {
        "h"
            + Data(name.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "") + "." + id
    }

    public static func decodeHost(_ cursor: String) -> (name: String, id: String)? {
        guard cursor.first == "h", let dot = cursor.firstIndex(of: ".") else { return nil }
        var base64 = cursor[cursor.index(after: cursor.startIndex)..<dot].replacingOccurrences(of: "-", with: "+")
            .replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        let id = String(cursor[cursor.index(after: dot)...])
        // Names and ids the API accepts (no control characters; an id as the store draws them), so a
        // forged cursor is a 422, never a value the database refuses.
        guard id.hasPrefix("host_"),
            id.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 122) }),
            let data = Data(base64Encoded: base64), let name = String(data: data, encoding: .utf8),
            !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { return nil }
        return (name, id)
    }

    /// The error of a cursor this server did not return.
    public static var malformed: ValidationError {
        ValidationError(field: "cursor", message: "is not a cursor this server returned; start again without it")
    }
}

/// JSON columns.
enum Codec {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(ISO8601.format(date))
        }
        return Array(try encoder.encode(value))
    }

    /// The stored form (the same text as `encode` gives, written without `JSONEncoder`).
    static func parameters(_ parameters: AgentParameters) -> String {
        parameters.jsonText
    }

    static func agents(_ agents: [AgentType]) -> String {
        (try? encode(agents)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }

    static func agents(_ text: String) -> [AgentType] {
        ((try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? []).compactMap(AgentType.init(rawValue:))
    }
}
