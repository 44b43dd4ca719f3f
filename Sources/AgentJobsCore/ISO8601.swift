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
        if let text = civilFormat(seconds: whole, milliseconds: fraction) { return text }
        let text = Date(timeIntervalSince1970: TimeInterval(whole)).formatted(wholeSeconds)
        let digits = String(fraction)
        return text.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }

    /// The format computed with integer arithmetic (days to Gregorian civil date), much cheaper
    /// than the format style; it is on every trigger's path (dispatch payload, API response).
    /// nil outside years 1600...9999: the format style switches to the Julian calendar before the
    /// Gregorian reform of 1582, and those dates keep its answer.
    static func civilFormat(seconds: Int64, milliseconds: Int64) -> String? {
        let (days, secondOfDay) = seconds.quotientAndRemainder(dividingBy: 86_400)
        let (day, second) = secondOfDay < 0 ? (days - 1, secondOfDay + 86_400) : (days, secondOfDay)
        // Howard Hinnant's civil_from_days.
        let z = day + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let dayOfMonth = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        guard (1600...9999).contains(year) else { return nil }
        var bytes = [UInt8](repeating: 0, count: 24)
        func put(_ value: Int64, at offset: Int, width: Int) {
            var value = value
            for position in stride(from: offset + width - 1, through: offset, by: -1) {
                bytes[position] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
        }
        put(year, at: 0, width: 4)
        bytes[4] = UInt8(ascii: "-")
        put(month, at: 5, width: 2)
        bytes[7] = UInt8(ascii: "-")
        put(dayOfMonth, at: 8, width: 2)
        bytes[10] = UInt8(ascii: "T")
        put(second / 3600, at: 11, width: 2)
        bytes[13] = UInt8(ascii: ":")
        put(second / 60 % 60, at: 14, width: 2)
        bytes[16] = UInt8(ascii: ":")
        put(second % 60, at: 17, width: 2)
        bytes[19] = UInt8(ascii: ".")
        put(milliseconds, at: 20, width: 3)
        bytes[23] = UInt8(ascii: "Z")
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses RFC 3339 with or without fractional seconds.
    public static func parse(_ text: String) -> Date? {
        if let date = try? style.parse(text) { return date }
        return try? wholeSeconds.parse(text)
    }
}
