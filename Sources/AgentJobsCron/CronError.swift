/// One of the five fields of a cron expression, in the order they are written.
public enum CronField: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// The first field, 0-59.
    case minute
    /// The second field, 0-23.
    case hour
    /// The third field, 1-31.
    case dayOfMonth = "day-of-month"
    /// The fourth field, 1-12 or JAN-DEC.
    case month
    /// The fifth field, 0-7 (0 and 7 are Sunday) or SUN-SAT.
    case dayOfWeek = "day-of-week"

    /// The field's name as users read it in error messages and docs, e.g. `day-of-month`.
    public var description: String { rawValue }

    /// The smallest value the field accepts.
    var lowerBound: Int {
        switch self {
        case .minute, .hour, .dayOfWeek: 0
        case .dayOfMonth, .month: 1
        }
    }

    /// The largest value the field accepts (7 for day-of-week, an alias of Sunday).
    var upperBound: Int {
        switch self {
        case .minute: 59
        case .hour: 23
        case .dayOfMonth: 31
        case .month: 12
        case .dayOfWeek: 7
        }
    }
}

/// Why a cron expression or a schedule's time zone was refused.
///
/// The error names the offending field and value so that an API can point at it, e.g.
/// `schedule.cron: minute: 61 is out of range 0-59`. Descriptions contain only what the user wrote.
public struct CronError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, machine-readable reason; new codes may be added.
    public struct Code: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
        /// The code as a string, e.g. `cron.out_of_range`.
        public let rawValue: String

        /// Creates a code from its string form.
        /// - Parameters:
        ///   - rawValue: The code as a string, e.g. `cron.out_of_range`.
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The expression is empty or only whitespace.
        public static let emptyExpression = Code(rawValue: "cron.empty_expression")
        /// The expression does not have exactly five fields.
        public static let wrongFieldCount = Code(rawValue: "cron.wrong_field_count")
        /// The expression starts with `@` but is not a supported macro.
        public static let unknownMacro = Code(rawValue: "cron.unknown_macro")
        /// A field value is neither a number nor a name the field accepts.
        public static let invalidValue = Code(rawValue: "cron.invalid_value")
        /// A number lies outside the field's range.
        public static let outOfRange = Code(rawValue: "cron.out_of_range")
        /// A range's start lies after its end.
        public static let invalidRange = Code(rawValue: "cron.invalid_range")
        /// A step (`/n`) is malformed or out of range.
        public static let invalidStep = Code(rawValue: "cron.invalid_step")
        /// The day-of-month and month fields name no day that exists (e.g. 30 February).
        public static let impossibleDate = Code(rawValue: "cron.impossible_date")
        /// The time zone identifier is not a known IANA identifier.
        public static let unknownTimeZone = Code(rawValue: "cron.unknown_time_zone")

        /// The code's string form.
        public var description: String { rawValue }
    }

    /// The stable reason for the error.
    public let code: Code
    /// The field that is wrong, or `nil` when the expression as a whole (or the time zone) is.
    public let field: CronField?
    /// The offending text exactly as written: a field element such as `61`, the whole expression,
    /// or the time zone identifier.
    public let value: String
    /// What is wrong, without the field name, e.g. `61 is out of range 0-59`.
    public let reason: String

    /// Creates an error.
    /// - Parameters:
    ///   - code: The stable reason.
    ///   - field: The offending field, if the error concerns one field.
    ///   - value: The offending text as the user wrote it.
    ///   - reason: What is wrong, phrased to follow the field name.
    public init(code: Code, field: CronField?, value: String, reason: String) {
        self.code = code
        self.field = field
        self.value = value
        self.reason = reason
    }

    /// A sentence for users, e.g. `minute 61 is out of range 0-59`.
    public var message: String {
        guard let field else { return reason }
        return "\(field) \(reason)"
    }

    /// The error as `field: reason`, e.g. `minute: 61 is out of range 0-59`, ready to be prefixed
    /// with the path of the API field that held the expression.
    public var description: String {
        guard let field else { return reason }
        return "\(field): \(reason)"
    }
}
