#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The one timestamp format on the wire and in the API: RFC 3339 in UTC with milliseconds,
/// e.g. `2026-11-29T02:23:12.345Z`.
public enum ISO8601 {
    private static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
    private static let wholeSeconds = Date.ISO8601FormatStyle(timeZone: .gmt)

    /// Formats `date` rounded to the nearest millisecond. The milliseconds are computed here rather
    /// than by the format style, which truncates the binary fraction: its output drifts by 1 ms
    /// on each parse/format round trip (`.123` → `.122`), which would break signatures over times.
    public static func format(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let seconds = milliseconds.quotientAndRemainder(dividingBy: 1000)
        let (whole, fraction) = seconds.remainder < 0 ? (seconds.quotient - 1, seconds.remainder + 1000) : seconds
        let text = Date(timeIntervalSince1970: TimeInterval(whole)).formatted(wholeSeconds)
        let digits = String(fraction)
        return text.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }

    /// Parses RFC 3339 with or without fractional seconds.
    public static func parse(_ text: String) -> Date? {
        if let date = try? style.parse(text) { return date }
        return try? wholeSeconds.parse(text)
    }
}
