#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The one timestamp format on the wire and in the API: RFC 3339 in UTC with milliseconds,
/// e.g. `2026-11-29T02:23:12.345Z`.
public enum ISO8601 {
    private static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)

    public static func format(_ date: Date) -> String { date.formatted(style) }

    /// Parses RFC 3339 with or without fractional seconds.
    public static func parse(_ text: String) -> Date? {
        if let date = try? style.parse(text) { return date }
        return try? Date.ISO8601FormatStyle(timeZone: .gmt).parse(text)
    }
}
