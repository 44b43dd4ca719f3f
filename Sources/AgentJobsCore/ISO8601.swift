import AgentJobsCron

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The one timestamp format on the wire and in the API: RFC 3339 in UTC with milliseconds,
/// e.g. `2026-11-29T02:23:12.345Z`.
///
/// Formatting and parsing our own form are written out (civil-date arithmetic on the proleptic
/// Gregorian calendar) because every signed message formats its time and every verified one
/// parses it: Foundation's format styles cost several µs per call through `Calendar`. Other
/// RFC 3339 forms (an offset instead of `Z`, other fraction lengths) are still accepted by parsing
/// through Foundation.
public enum ISO8601 {
    private static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
    private static let wholeSeconds = Date.ISO8601FormatStyle(timeZone: .gmt)

    /// Formats `date` rounded to the nearest millisecond (never truncated: a truncating format
    /// drifts by 1 ms on each parse/format round trip, `.123` → `.122`, which would break
    /// signatures over times).
    public static func format(_ date: Date) -> String {
        String(decoding: utf8(date), as: UTF8.self)
    }

    /// ``format(_:)`` as UTF-8 bytes, for signed bytes and message headers.
    static func utf8(_ date: Date) -> [UInt8] {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let seconds = Int64(GregorianCalendar.floorDiv(Int(milliseconds), 1000))
        let fraction = milliseconds - seconds * 1000
        let days = GregorianCalendar.floorDiv(Int(seconds), 86_400)
        let secondOfDay = seconds - Int64(days) * 86_400
        let (civilYear, civilMonth, civilDay) = GregorianCalendar.civil(fromDays: days)
        let (year, month, day) = (Int64(civilYear), Int64(civilMonth), Int64(civilDay))
        guard (0...9999).contains(year) else {
            // Outside four-digit years RFC 3339 has no form; let Foundation say what it says.
            return Array(Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(wholeSeconds).utf8)
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(24)
        func digits(_ value: Int64, _ count: Int) {
            var divisor: Int64 = 1
            for _ in 1..<count { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        digits(year, 4)
        bytes.append(UInt8(ascii: "-"))
        digits(month, 2)
        bytes.append(UInt8(ascii: "-"))
        digits(day, 2)
        bytes.append(UInt8(ascii: "T"))
        digits(secondOfDay / 3600, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(secondOfDay / 60 % 60, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(secondOfDay % 60, 2)
        bytes.append(UInt8(ascii: "."))
        digits(fraction, 3)
        bytes.append(UInt8(ascii: "Z"))
        return bytes
    }

    /// Parses RFC 3339 with or without fractional seconds.
    public static func parse(_ text: String) -> Date? {
        switch parseUTC(text) {
        case .date(let date): return date
        case .invalid: return nil
        case .otherForm: break
        }
        if let date = try? style.parse(text) { return date }
        return try? wholeSeconds.parse(text)
    }

    private enum UTCParse {
        case date(Date)
        /// The shape of our form with an impossible value (month 13, February 30, hour 24, …).
        case invalid
        /// Not our form: Foundation's styles get to try it.
        case otherForm
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (one to three fraction digits), the form ``format(_:)`` writes.
    private static func parseUTC(_ text: String) -> UTCParse {
        var text = text
        return text.withUTF8 { bytes -> UTCParse in
            guard bytes.count >= 20, bytes.count <= 24, bytes[bytes.count - 1] == UInt8(ascii: "Z"),
                bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T"),
                bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":")
            else { return .otherForm }
            func number(_ start: Int, _ count: Int) -> Int64? {
                var value: Int64 = 0
                for index in start..<(start + count) {
                    let byte = bytes[index]
                    guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                    value = value * 10 + Int64(byte - UInt8(ascii: "0"))
                }
                return value
            }
            guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
                let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
                (1...12).contains(month),
                (1...Int64(GregorianCalendar.daysInMonth(year: Int(year), month: Int(month)))).contains(day),
                hour < 24, minute < 60, second < 60
            else { return .invalid }
            var milliseconds: Int64 = 0
            if bytes.count > 20 {
                // ".f", ".ff" or ".fff" before the Z.
                let fractionDigits = bytes.count - 21
                guard fractionDigits >= 1, bytes[19] == UInt8(ascii: "."), let fraction = number(20, fractionDigits)
                else { return .otherForm }
                milliseconds = fraction * [100, 10, 1][fractionDigits - 1]
            }
            let days = Int64(GregorianCalendar.days(fromCivil: Int(year), Int(month), Int(day)))
            let seconds = days * 86_400 + hour * 3600 + minute * 60 + second
            return .date(Date(timeIntervalSince1970: TimeInterval(seconds * 1000 + milliseconds) / 1000))
        }
    }
}
