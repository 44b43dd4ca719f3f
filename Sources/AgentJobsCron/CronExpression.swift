/// A parsed five-field cron expression (minute hour day-of-month month day-of-week).
///
/// Supported syntax per field: `*`, numbers, lists `a,b`, ranges `a-b`, steps `*/n`, `a-b/n` and
/// `a/n` (from `a` to the field's maximum), month names `JAN`-`DEC` and weekday names `SUN`-`SAT`
/// (case-insensitive), day-of-week 0-7 (0 and 7 are Sunday), and the macros `@hourly`, `@daily`,
/// `@midnight`, `@weekly`, `@monthly`, `@yearly` and `@annually`.
///
/// Days follow the Vixie-cron rule: when both day-of-month and day-of-week are restricted, a day
/// matches if *either* matches; when one of them starts with `*` (`*` or `*/n`), a day must match
/// both. The expression describes local wall-clock times; ``CronSchedule`` ties it to a time zone.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The expression as written, without surrounding whitespace (macros stay as written, e.g. `@daily`).
    public let source: String

    // Bit i set = value i allowed. Day-of-week uses bits 0-6 (7 is folded into 0, Sunday).
    let minutes: UInt64
    let hours: UInt64
    let daysOfMonth: UInt64
    let months: UInt64
    let daysOfWeek: UInt64
    // Vixie-cron's DOM_STAR / DOW_STAR: the field was written starting with `*`.
    let dayOfMonthIsWildcard: Bool
    let dayOfWeekIsWildcard: Bool

    /// Parses a cron expression.
    /// - Parameters:
    ///   - text: Five whitespace-separated fields or a macro such as `@daily`; surrounding
    ///     whitespace is ignored.
    /// - Throws: ``CronError`` naming the offending field and value when the expression is empty,
    ///   has the wrong number of fields, uses an unknown macro, contains a value, range or step the
    ///   field does not accept, or names only days that never exist (e.g. `0 0 30 2 *`).
    public init(_ text: String) throws(CronError) {
        let trimmed = Self.trimmingWhitespace(text)
        guard !trimmed.isEmpty else {
            throw CronError(
                code: .emptyExpression, field: nil, value: text,
                reason: "the cron expression is empty; expected 5 fields (\(Self.fieldList)) or a macro such as @daily")
        }
        let fieldsText: String
        if trimmed.hasPrefix("@") {
            fieldsText = try Self.expandMacro(trimmed)
        } else {
            fieldsText = trimmed
        }
        let parts = fieldsText.split(whereSeparator: \.isWhitespace)
        guard parts.count == 5 else {
            throw CronError(
                code: .wrongFieldCount, field: nil, value: trimmed,
                reason: "expected 5 fields (\(Self.fieldList)) but found \(parts.count)")
        }
        source = trimmed
        minutes = try Self.parseField(parts[0], .minute)
        hours = try Self.parseField(parts[1], .hour)
        daysOfMonth = try Self.parseField(parts[2], .dayOfMonth)
        months = try Self.parseField(parts[3], .month)
        daysOfWeek = try Self.parseField(parts[4], .dayOfWeek)
        dayOfMonthIsWildcard = parts[2].hasPrefix("*")
        dayOfWeekIsWildcard = parts[4].hasPrefix("*")
        try checkSomeDayExists(dayOfMonthText: parts[2])
    }

    /// The expression as written.
    public var description: String { source }

    /// The values a field allows, ascending.
    ///
    /// Day-of-week values are 0-6 with 0 = Sunday (a written 7 appears as 0).
    /// - Parameters:
    ///   - field: The field to list.
    public func values(of field: CronField) -> [Int] {
        let bits = self.bits(of: field)
        return (field.lowerBound...field.upperBound).filter { bits & (1 << UInt64($0)) != 0 }
    }

    /// Tells whether a local wall-clock minute matches the expression.
    ///
    /// The caller supplies a consistent date: `weekday` must be the weekday of `day`/`month` in the
    /// year in question. Time zones and daylight saving time are ``CronSchedule``'s concern.
    /// - Parameters:
    ///   - minute: 0-59.
    ///   - hour: 0-23.
    ///   - day: Day of the month, 1-31.
    ///   - month: 1-12.
    ///   - weekday: 0-6, 0 = Sunday.
    public func matches(minute: Int, hour: Int, day: Int, month: Int, weekday: Int) -> Bool {
        Self.contains(minutes, minute) && Self.contains(hours, hour)
            && Self.contains(months, month) && dayMatches(day: day, weekday: weekday)
    }

    /// Applies the day-of-month / day-of-week rule (month is checked separately).
    func dayMatches(day: Int, weekday: Int) -> Bool {
        let dayOfMonthMatches = Self.contains(daysOfMonth, day)
        let dayOfWeekMatches = Self.contains(daysOfWeek, weekday)
        if dayOfMonthIsWildcard || dayOfWeekIsWildcard {
            return dayOfMonthMatches && dayOfWeekMatches
        }
        return dayOfMonthMatches || dayOfWeekMatches
    }

    func bits(of field: CronField) -> UInt64 {
        switch field {
        case .minute: minutes
        case .hour: hours
        case .dayOfMonth: daysOfMonth
        case .month: months
        case .dayOfWeek: daysOfWeek
        }
    }

    // MARK: - Bit sets

    @inline(__always)
    static func contains(_ bits: UInt64, _ value: Int) -> Bool {
        value >= 0 && value < 64 && bits & (1 << UInt64(value)) != 0
    }

    /// The smallest value in `bits` that is `>= value`, if any.
    @inline(__always)
    static func nextValue(in bits: UInt64, atOrAfter value: Int) -> Int? {
        guard value < 64 else { return nil }
        let masked = value <= 0 ? bits : bits & (~UInt64(0) << UInt64(value))
        return masked == 0 ? nil : masked.trailingZeroBitCount
    }

    // MARK: - Parsing

    private static let fieldList = "minute hour day-of-month month day-of-week"

    private static let macros: [String: String] = [
        "@hourly": "0 * * * *",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@weekly": "0 0 * * 0",
        "@monthly": "0 0 1 * *",
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
    ]

    private static let monthNames = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ]
    private static let weekdayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    private static func trimmingWhitespace(_ text: String) -> String {
        guard let first = text.firstIndex(where: { !$0.isWhitespace }),
            let last = text.lastIndex(where: { !$0.isWhitespace })
        else { return "" }
        return String(text[first...last])
    }

    private static func expandMacro(_ text: String) throws(CronError) -> String {
        let name = text.lowercased()
        if let expansion = macros[name] { return expansion }
        if name == "@reboot" {
            throw CronError(
                code: .unknownMacro, field: nil, value: text,
                reason: "@reboot is not supported: a schedule fires at wall-clock times, not when a host starts")
        }
        throw CronError(
            code: .unknownMacro, field: nil, value: text,
            reason:
                "unknown macro \"\(text)\"; expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually"
        )
    }

    private static func parseField(_ text: Substring, _ field: CronField) throws(CronError) -> UInt64 {
        var bits: UInt64 = 0
        for element in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !element.isEmpty else {
                throw CronError(
                    code: .invalidValue, field: field, value: String(text),
                    reason: "list \"\(text)\" has an empty element")
            }
            bits |= try parseElement(element, field)
        }
        if field == .dayOfWeek, bits & (1 << 7) != 0 {
            bits = (bits & ~(1 << 7)) | 1  // 7 is another name for Sunday.
        }
        return bits
    }

    /// Parses one list element: `*`, `v`, `a-b`, each optionally followed by `/step`.
    private static func parseElement(_ element: Substring, _ field: CronField) throws(CronError) -> UInt64 {
        let pieces = element.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let rangeText = pieces[0]
        let step = try pieces.count == 2 ? parseStep(pieces[1], in: element, field) : nil

        var low: Int
        var high: Int
        if rangeText == "*" {
            low = field.lowerBound
            high = field.upperBound
        } else if rangeText.contains("-") {
            let ends = rangeText.split(separator: "-", omittingEmptySubsequences: false)
            guard ends.count == 2, !ends[0].isEmpty, !ends[1].isEmpty else {
                throw CronError(
                    code: .invalidValue, field: field, value: String(rangeText),
                    reason: "\"\(rangeText)\" is not a valid range; expected start-end, e.g. \(field.exampleRange)")
            }
            low = try parseValue(ends[0], field)
            high = try parseValue(ends[1], field)
            if field == .dayOfWeek, high == 0, low > 0 {
                high = 7  // FRI-SUN: Sunday at the end of a range means 7.
            }
            guard low <= high else {
                throw CronError(
                    code: .invalidRange, field: field, value: String(rangeText),
                    reason: "range \(rangeText) runs backwards; its start must not be after its end")
            }
        } else if rangeText.isEmpty {
            throw CronError(
                code: .invalidValue, field: field, value: String(element),
                reason: "\"\(element)\" has no value before \"/\"; expected e.g. */\(step ?? 2)")
        } else {
            low = try parseValue(rangeText, field)
            // `a/n` means from a to the field's maximum in steps of n.
            high = step == nil ? low : field.upperBound
        }

        var bits: UInt64 = 0
        for value in stride(from: low, through: high, by: step ?? 1) {
            bits |= 1 << UInt64(value)
        }
        return bits
    }

    private static func parseStep(_ text: Substring, in element: Substring, _ field: CronField) throws(CronError) -> Int
    {
        let maximum = field.upperBound - field.lowerBound
        guard !text.isEmpty else {
            throw CronError(
                code: .invalidStep, field: field, value: String(element),
                reason: "\"\(element)\" has no step after \"/\"; expected e.g. */2")
        }
        guard text.allSatisfy(\.isASCIIDigit) else {
            throw CronError(
                code: .invalidStep, field: field, value: String(text),
                reason: "step \"\(text)\" is not a number; expected 1-\(maximum)")
        }
        guard let step = Int(text), step >= 1, step <= maximum else {
            throw CronError(
                code: .invalidStep, field: field, value: String(text),
                reason: "step \(text) is out of range 1-\(maximum)")
        }
        return step
    }

    private static func parseValue(_ text: Substring, _ field: CronField) throws(CronError) -> Int {
        if text.allSatisfy(\.isASCIIDigit) {
            guard let value = Int(text), value >= field.lowerBound, value <= field.upperBound else {
                throw CronError(
                    code: .outOfRange, field: field, value: String(text),
                    reason: "\(text) is out of range \(field.lowerBound)-\(field.upperBound)")
            }
            return value
        }
        let name = text.uppercased()
        switch field {
        case .month:
            if let index = monthNames.firstIndex(of: name) { return index + 1 }
        case .dayOfWeek:
            if let index = weekdayNames.firstIndex(of: name) { return index }
        case .minute, .hour, .dayOfMonth:
            break
        }
        throw CronError(
            code: .invalidValue, field: field, value: String(text),
            reason: "\"\(text)\" is not \(field.acceptedValues)")
    }

    /// Refuses expressions that can never fire because the days they name do not exist.
    ///
    /// Only possible when days must match day-of-month (day-of-week starts with `*`): any
    /// restricted day-of-week otherwise supplies days. 29 February counts as existing.
    private func checkSomeDayExists(dayOfMonthText: Substring) throws(CronError) {
        guard dayOfWeekIsWildcard, let firstDay = Self.nextValue(in: daysOfMonth, atOrAfter: 1) else { return }
        let selectedMonths = values(of: .month)
        let longest = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard selectedMonths.allSatisfy({ firstDay > longest[$0 - 1] }) else { return }
        let names = selectedMonths.map { CronExpression.monthFullNames[$0 - 1] }
        throw CronError(
            code: .impossibleDate, field: .dayOfMonth, value: String(dayOfMonthText),
            reason: "\(dayOfMonthText) never occurs in \(CronExpression.joinedList(names, conjunction: "or"))")
    }

    static let monthFullNames = [
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ]

    /// Joins `["a", "b", "c"]` as `a, b and c`.
    static func joinedList(_ items: [String], conjunction: String = "and") -> String {
        guard items.count > 1 else { return items.first ?? "" }
        return items.dropLast().joined(separator: ", ") + " \(conjunction) " + items[items.count - 1]
    }
}

// MARK: - Codable

extension CronExpression: Codable {
    /// Decodes an expression from a single string and validates it.
    /// - Parameters:
    ///   - decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` whose underlying error is the ``CronError``.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            try self.init(text)
        } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: error.description, underlyingError: error))
        }
    }

    /// Encodes the expression as the string it was written as.
    /// - Parameters:
    ///   - encoder: The encoder to write to.
    /// - Throws: Whatever the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(source)
    }
}

extension CronField {
    fileprivate var acceptedValues: String {
        switch self {
        case .month: "a number 1-12 or a month name JAN-DEC"
        case .dayOfWeek: "a number 0-7 or a weekday name SUN-SAT"
        default: "a number \(lowerBound)-\(upperBound)"
        }
    }

    fileprivate var exampleRange: String {
        switch self {
        case .minute: "0-29"
        case .hour: "9-17"
        case .dayOfMonth: "1-15"
        case .month: "JAN-MAR"
        case .dayOfWeek: "MON-FRI"
        }
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
