import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Opaque run-list cursors: the position of the last run of a page.
enum RunCursor {
    static func encode(_ sequence: Int64) -> String { "c" + String(sequence, radix: 36) }

    static func decode(_ cursor: String) -> Int64? {
        guard cursor.first == "c", let value = Int64(cursor.dropFirst(), radix: 36), value > 0 else { return nil }
        return value
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
