import AgentJobsCore
import ArgumentParser
import Foundation

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table
    case json
}

/// Rows and columns for the terminal.
struct Table {
    var headers: [String]
    var rows: [[String]]

    var rendered: String {
        var widths = headers.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], cell.count)
            }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }
}

enum Output {
    /// `text` as one word for a POSIX shell: as it is when it holds only characters no shell treats
    /// specially, else in single quotes.
    static func shellQuoted(_ text: String) -> String {
        let plain =
            !text.isEmpty
            && text.unicodeScalars.allSatisfy { scalar in
                scalar.isASCII
                    && (CharacterSet.alphanumerics.contains(scalar) || "-_./:=,@+%".unicodeScalars.contains(scalar))
            }
        return plain ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func print(_ format: OutputFormat, json: some Encodable, table: @autoclosure () -> Table) throws {
        switch format {
        case .json: Swift.print(try encoded(json, pretty: true))
        case .table: Swift.print(table().rendered)
        }
    }

    /// `json` as JSON: indented, or on one line (a stream of objects, one per line, as `runs watch`
    /// writes them).
    static func encoded(_ json: some Encodable, pretty: Bool) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting =
            pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(ISO8601.format(date))
        }
        return String(decoding: try encoder.encode(json), as: UTF8.self)
    }

    /// In JSON mode `json`, else the line `text`.
    static func result(_ format: OutputFormat, json: some Encodable, text: @autoclosure () -> String) throws {
        Swift.print(format == .json ? try encoded(json, pretty: true) : text())
    }

    static func date(_ date: Date) -> String { ISO8601.format(date) }

    /// A timestamp from the API, shortened for a table.
    static func shortDate(_ value: JSONValue?) -> String {
        guard let text = value?.stringValue, let date = ISO8601.parse(text) else { return "-" }
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        formatter.timeZone = TimeZone.current
        return formatter.string(from: date)
    }

    static func text(_ value: JSONValue?) -> String { value?.stringValue ?? "-" }

    static func duration(_ value: JSONValue?) -> String {
        guard case .number(let ms)? = value else { return "-" }
        if ms < 1000 { return "\(Int(ms))ms" }
        let seconds = Int(ms / 1000)
        return seconds < 60 ? String(format: "%.1fs", ms / 1000) : "\(seconds / 60)m\(seconds % 60)s"
    }

    static func parameters(_ value: JSONValue?) -> String {
        guard case .object(let object)? = value else { return "-" }
        return object.keys.sorted().map { key in
            let rendered: String
            switch object[key]! {
            case .array(let items): rendered = items.compactMap(\.stringValue).joined(separator: ",")
            case let other: rendered = other.stringValue ?? "-"
            }
            return "\(key)=\(rendered)"
        }.joined(separator: " ")
    }
}
