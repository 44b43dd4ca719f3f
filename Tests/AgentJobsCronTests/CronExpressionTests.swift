import Foundation
import Testing

@testable import AgentJobsCron

@Suite("Cron expression parsing")
struct CronExpressionParsingTests {
    struct FieldCase: Sendable, CustomTestStringConvertible {
        let expression: String
        let field: CronField
        let values: [Int]
        var testDescription: String { "\"\(expression)\" \(field)" }
    }

    static let fieldCases: [FieldCase] = [
        // Every syntax form, in every field where it means something different.
        .init(expression: "* * * * *", field: .minute, values: Array(0...59)),
        .init(expression: "* * * * *", field: .hour, values: Array(0...23)),
        .init(expression: "* * * * *", field: .dayOfMonth, values: Array(1...31)),
        .init(expression: "* * * * *", field: .month, values: Array(1...12)),
        .init(expression: "* * * * *", field: .dayOfWeek, values: Array(0...6)),
        .init(expression: "5 * * * *", field: .minute, values: [5]),
        .init(expression: "05 * * * *", field: .minute, values: [5]),
        .init(expression: "1,2,30 * * * *", field: .minute, values: [1, 2, 30]),
        .init(expression: "10-15 * * * *", field: .minute, values: [10, 11, 12, 13, 14, 15]),
        .init(expression: "*/15 * * * *", field: .minute, values: [0, 15, 30, 45]),
        .init(expression: "10-30/10 * * * *", field: .minute, values: [10, 20, 30]),
        .init(expression: "50/5 * * * *", field: .minute, values: [50, 55]),
        .init(expression: "1-3,*/20,59 * * * *", field: .minute, values: [0, 1, 2, 3, 20, 40, 59]),
        .init(expression: "0 */6 * * *", field: .hour, values: [0, 6, 12, 18]),
        .init(expression: "0 9-17/4 * * *", field: .hour, values: [9, 13, 17]),
        .init(expression: "0 0 1,15 * *", field: .dayOfMonth, values: [1, 15]),
        .init(expression: "0 0 */10 * *", field: .dayOfMonth, values: [1, 11, 21, 31]),
        .init(expression: "0 0 1 JAN,jul *", field: .month, values: [1, 7]),
        .init(expression: "0 0 1 jan-Mar *", field: .month, values: [1, 2, 3]),
        .init(expression: "0 0 1 */3 *", field: .month, values: [1, 4, 7, 10]),
        .init(expression: "0 0 1 Feb/4 *", field: .month, values: [2, 6, 10]),
        .init(expression: "0 0 1 12 *", field: .month, values: [12]),
        .init(expression: "0 0 * * 0", field: .dayOfWeek, values: [0]),
        .init(expression: "0 0 * * 7", field: .dayOfWeek, values: [0]),
        .init(expression: "0 0 * * mon-FRI", field: .dayOfWeek, values: [1, 2, 3, 4, 5]),
        .init(expression: "0 0 * * sun,SAT", field: .dayOfWeek, values: [0, 6]),
        .init(expression: "0 0 * * 5-7", field: .dayOfWeek, values: [0, 5, 6]),
        .init(expression: "0 0 * * FRI-SUN", field: .dayOfWeek, values: [0, 5, 6]),
        .init(expression: "0 0 * * */2", field: .dayOfWeek, values: [0, 2, 4, 6]),
        .init(expression: "0 0 * * 1-7/2", field: .dayOfWeek, values: [0, 1, 3, 5]),
        .init(expression: "0 0 * * WED/2", field: .dayOfWeek, values: [0, 3, 5]),
    ]

    @Test("each syntax form selects the documented values", arguments: fieldCases)
    func syntaxFormSelectsValues(_ testCase: FieldCase) throws {
        let expression = try CronExpression(testCase.expression)
        #expect(expression.values(of: testCase.field) == testCase.values)
    }

    @Test(
        "macros expand to their five-field equivalents, case-insensitively",
        arguments: [
            ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
            ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"), ("@DAILY", "0 0 * * *"), (" @Weekly\n", "0 0 * * 0"),
        ])
    func macroExpands(macro: String, expansion: String) throws {
        let parsed = try CronExpression(macro)
        let expected = try CronExpression(expansion)
        for field in CronField.allCases {
            #expect(parsed.values(of: field) == expected.values(of: field), "\(field)")
        }
        #expect(parsed.source == macro.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test("fields may be separated by any whitespace and the source is kept trimmed")
    func whitespaceBetweenFields() throws {
        let expression = try CronExpression("  0\t9 * *   1  ")
        #expect(expression.source == "0\t9 * *   1")
        #expect(expression.values(of: .hour) == [9])
        #expect(expression.values(of: .dayOfWeek) == [1])
    }

    // 2025-06-13 is a Friday; 2025-06-12 a Thursday; 2025-06-02 a Monday.

    @Test("when both day fields are restricted a day matches if either matches")
    func restrictedDayFieldsMatchEither() throws {
        let expression = try CronExpression("0 0 13 * FRI")
        #expect(expression.matches(minute: 0, hour: 0, day: 13, month: 6, weekday: 5))
        #expect(expression.matches(minute: 0, hour: 0, day: 20, month: 6, weekday: 5))  // a Friday
        #expect(expression.matches(minute: 0, hour: 0, day: 13, month: 11, weekday: 4))  // a 13th
        #expect(!expression.matches(minute: 0, hour: 0, day: 12, month: 6, weekday: 4))
    }

    @Test("a day field starting with * makes the other day field decide alone (Vixie rule)")
    func wildcardDayFieldRequiresBoth() throws {
        let mondays = try CronExpression("0 0 * * MON")
        #expect(mondays.matches(minute: 0, hour: 0, day: 2, month: 6, weekday: 1))
        #expect(!mondays.matches(minute: 0, hour: 0, day: 3, month: 6, weekday: 2))

        let firsts = try CronExpression("0 0 1 * *")
        #expect(firsts.matches(minute: 0, hour: 0, day: 1, month: 6, weekday: 0))
        #expect(!firsts.matches(minute: 0, hour: 0, day: 2, month: 6, weekday: 1))

        // `*/2` starts with `*`, so like Vixie cron it is not "restricted": both must match.
        let oddMondays = try CronExpression("0 0 */2 * MON")
        #expect(oddMondays.matches(minute: 0, hour: 0, day: 9, month: 6, weekday: 1))
        #expect(!oddMondays.matches(minute: 0, hour: 0, day: 2, month: 6, weekday: 1))
        #expect(!oddMondays.matches(minute: 0, hour: 0, day: 3, month: 6, weekday: 2))
    }

    @Test("a restricted day field covering every day makes every day match")
    func fullDayOfMonthRangeWithWeekday() throws {
        let expression = try CronExpression("0 0 1-31 * MON")
        #expect(expression.matches(minute: 0, hour: 0, day: 3, month: 6, weekday: 2))
    }

    @Test("matching checks minute, hour and month")
    func matchingChecksTimeAndMonth() throws {
        let expression = try CronExpression("30 2 * JUN *")
        #expect(expression.matches(minute: 30, hour: 2, day: 1, month: 6, weekday: 0))
        #expect(!expression.matches(minute: 31, hour: 2, day: 1, month: 6, weekday: 0))
        #expect(!expression.matches(minute: 30, hour: 3, day: 1, month: 6, weekday: 0))
        #expect(!expression.matches(minute: 30, hour: 2, day: 1, month: 7, weekday: 0))
    }

    @Test("29 February is accepted even though it exists only in leap years")
    func leapDayIsAccepted() throws {
        #expect(try CronExpression("0 0 29 2 *").values(of: .dayOfMonth) == [29])
    }

    @Test("an impossible day of month is accepted when a restricted weekday supplies days")
    func impossibleDayWithWeekdayIsAccepted() throws {
        #expect(try CronExpression("0 0 30 2 MON").values(of: .dayOfWeek) == [1])
    }

    @Test("expressions round-trip through Codable as their source string")
    func codableRoundTrip() throws {
        let expression = try CronExpression("*/5 9-17 * * MON-FRI")
        let data = try JSONEncoder().encode(expression)
        #expect(String(decoding: data, as: UTF8.self) == #""*\/5 9-17 * * MON-FRI""#)
        #expect(try JSONDecoder().decode(CronExpression.self, from: data) == expression)
    }

    @Test("decoding an invalid expression fails with the cron error underneath")
    func decodingInvalidExpressionFails() throws {
        let error = #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(CronExpression.self, from: Data(#""61 * * * *""#.utf8))
        }
        guard case .dataCorrupted(let context) = error else {
            Issue.record("expected dataCorrupted, got \(String(describing: error))")
            return
        }
        #expect(context.debugDescription == "minute: 61 is out of range 0-59")
        #expect((context.underlyingError as? CronError)?.field == .minute)
    }
}

@Suite("Cron expression errors")
struct CronExpressionErrorTests {
    struct ErrorCase: Sendable, CustomTestStringConvertible {
        let expression: String
        let code: CronError.Code
        let field: CronField?
        let value: String
        let message: String
        var testDescription: String { "\"\(expression)\"" }
    }

    static let fields = "(minute hour day-of-month month day-of-week)"

    static let cases: [ErrorCase] = [
        .init(
            expression: "", code: .emptyExpression, field: nil, value: "",
            message: "the cron expression is empty; expected 5 fields \(fields) or a macro such as @daily"),
        .init(
            expression: " \t ", code: .emptyExpression, field: nil, value: " \t ",
            message: "the cron expression is empty; expected 5 fields \(fields) or a macro such as @daily"),
        .init(
            expression: "* * * *", code: .wrongFieldCount, field: nil, value: "* * * *",
            message: "expected 5 fields \(fields) but found 4"),
        .init(
            expression: "0 0 * * * 2025", code: .wrongFieldCount, field: nil, value: "0 0 * * * 2025",
            message: "expected 5 fields \(fields) but found 6"),
        .init(
            expression: "@reboot", code: .unknownMacro, field: nil, value: "@reboot",
            message: "@reboot is not supported: a schedule fires at wall-clock times, not when a host starts"),
        .init(
            expression: "@fortnightly", code: .unknownMacro, field: nil, value: "@fortnightly",
            message:
                "unknown macro \"@fortnightly\"; expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually"
        ),
        .init(
            expression: "61 * * * *", code: .outOfRange, field: .minute, value: "61",
            message: "minute 61 is out of range 0-59"),
        .init(
            expression: "99999999999999999999 * * * *", code: .outOfRange, field: .minute,
            value: "99999999999999999999", message: "minute 99999999999999999999 is out of range 0-59"),
        .init(
            expression: "0 24 * * *", code: .outOfRange, field: .hour, value: "24",
            message: "hour 24 is out of range 0-23"),
        .init(
            expression: "0 0 0 * *", code: .outOfRange, field: .dayOfMonth, value: "0",
            message: "day-of-month 0 is out of range 1-31"),
        .init(
            expression: "0 0 1-32 * *", code: .outOfRange, field: .dayOfMonth, value: "32",
            message: "day-of-month 32 is out of range 1-31"),
        .init(
            expression: "0 0 * 13 *", code: .outOfRange, field: .month, value: "13",
            message: "month 13 is out of range 1-12"),
        .init(
            expression: "0 0 * 0 *", code: .outOfRange, field: .month, value: "0",
            message: "month 0 is out of range 1-12"),
        .init(
            expression: "0 0 * * 8", code: .outOfRange, field: .dayOfWeek, value: "8",
            message: "day-of-week 8 is out of range 0-7"),
        .init(
            expression: "x * * * *", code: .invalidValue, field: .minute, value: "x",
            message: "minute \"x\" is not a number 0-59"),
        .init(
            expression: "MON 0 * * *", code: .invalidValue, field: .minute, value: "MON",
            message: "minute \"MON\" is not a number 0-59"),
        .init(
            expression: "0 0 * JANUARY *", code: .invalidValue, field: .month, value: "JANUARY",
            message: "month \"JANUARY\" is not a number 1-12 or a month name JAN-DEC"),
        .init(
            expression: "0 0 * * Monday", code: .invalidValue, field: .dayOfWeek, value: "Monday",
            message: "day-of-week \"Monday\" is not a number 0-7 or a weekday name SUN-SAT"),
        .init(
            expression: "0 0 * * -1", code: .invalidValue, field: .dayOfWeek, value: "-1",
            message: "day-of-week \"-1\" is not a valid range; expected start-end, e.g. MON-FRI"),
        .init(
            expression: "1- * * * *", code: .invalidValue, field: .minute, value: "1-",
            message: "minute \"1-\" is not a valid range; expected start-end, e.g. 0-29"),
        .init(
            expression: "0 1-2-3 * * *", code: .invalidValue, field: .hour, value: "1-2-3",
            message: "hour \"1-2-3\" is not a valid range; expected start-end, e.g. 9-17"),
        .init(
            expression: "*-5 * * * *", code: .invalidValue, field: .minute, value: "*",
            message: "minute \"*\" is not a number 0-59"),
        .init(
            expression: "1,,2 * * * *", code: .invalidValue, field: .minute, value: "1,,2",
            message: "minute list \"1,,2\" has an empty element"),
        .init(
            expression: "0 0 1, * *", code: .invalidValue, field: .dayOfMonth, value: "1,",
            message: "day-of-month list \"1,\" has an empty element"),
        .init(
            expression: "/5 * * * *", code: .invalidValue, field: .minute, value: "/5",
            message: "minute \"/5\" has no value before \"/\"; expected e.g. */5"),
        .init(
            expression: "30-10 * * * *", code: .invalidRange, field: .minute, value: "30-10",
            message: "minute range 30-10 runs backwards; its start must not be after its end"),
        .init(
            expression: "0 0 1 DEC-JAN *", code: .invalidRange, field: .month, value: "DEC-JAN",
            message: "month range DEC-JAN runs backwards; its start must not be after its end"),
        .init(
            expression: "*/0 * * * *", code: .invalidStep, field: .minute, value: "0",
            message: "minute step 0 is out of range 1-59"),
        .init(
            expression: "0 */24 * * *", code: .invalidStep, field: .hour, value: "24",
            message: "hour step 24 is out of range 1-23"),
        .init(
            expression: "0 0 * * */8", code: .invalidStep, field: .dayOfWeek, value: "8",
            message: "day-of-week step 8 is out of range 1-7"),
        .init(
            expression: "*/ * * * *", code: .invalidStep, field: .minute, value: "*/",
            message: "minute \"*/\" has no step after \"/\"; expected e.g. */2"),
        .init(
            expression: "*/x * * * *", code: .invalidStep, field: .minute, value: "x",
            message: "minute step \"x\" is not a number; expected 1-59"),
        .init(
            expression: "1/2/3 * * * *", code: .invalidStep, field: .minute, value: "2/3",
            message: "minute step \"2/3\" is not a number; expected 1-59"),
        .init(
            expression: "0 0 30 2 *", code: .impossibleDate, field: .dayOfMonth, value: "30",
            message: "day-of-month 30 never occurs in February"),
        .init(
            expression: "0 0 31 APR,jun *", code: .impossibleDate, field: .dayOfMonth, value: "31",
            message: "day-of-month 31 never occurs in April or June"),
    ]

    @Test("invalid expressions are refused with the offending field, value and a message", arguments: cases)
    func invalidExpressionIsRefused(_ testCase: ErrorCase) {
        let error = #expect(throws: CronError.self) { try CronExpression(testCase.expression) }
        #expect(error?.code == testCase.code)
        #expect(error?.field == testCase.field)
        #expect(error?.value == testCase.value)
        #expect(error?.message == testCase.message)
    }

    @Test("the error description reads as field: reason, ready for an API path prefix")
    func descriptionIsFieldColonReason() {
        let error = #expect(throws: CronError.self) { try CronExpression("61 * * * *") }
        #expect(error.map { "schedule.cron: \($0)" } == "schedule.cron: minute: 61 is out of range 0-59")
        #expect(error?.reason == "61 is out of range 0-59")
        #expect(error?.code.rawValue == "cron.out_of_range")
    }

    @Test("errors without a field describe themselves with the reason alone")
    func fieldlessErrorDescription() {
        let error = #expect(throws: CronError.self) { try CronExpression("* *") }
        #expect(error?.description == "expected 5 fields \(Self.fields) but found 2")
    }

    @Test("the error is a Sendable value")
    func errorIsSendable() {
        let error = CronError(code: .outOfRange, field: .hour, value: "24", reason: "24 is out of range 0-23")
        let sendable: any Sendable & Error = error
        #expect((sendable as? CronError) == error)
    }
}

@Suite("Cron expression descriptions")
struct CronExpressionDescriptionTests {
    @Test(
        "common expressions read as plain English",
        arguments: [
            ("* * * * *", "every minute"),
            ("*/15 * * * *", "every 15 minutes"),
            ("0 * * * *", "at minute 0 past every hour"),
            ("@hourly", "at minute 0 past every hour"),
            ("30 2 * * *", "every day at 02:30"),
            ("@daily", "every day at 00:00"),
            ("0 9,17 * * *", "every day at 09:00 and 17:00"),
            ("0 9 * * MON", "every Monday at 09:00"),
            ("0 9 * * 1", "every Monday at 09:00"),
            ("0 9 * * 1,3,5", "every Monday, Wednesday and Friday at 09:00"),
            ("0 9 * * MON-FRI", "every weekday at 09:00"),
            ("@weekly", "every Sunday at 00:00"),
            ("0 0 * * 7", "every Sunday at 00:00"),
            ("@monthly", "on day 1 of every month at 00:00"),
            ("0 6 1,15 * *", "on days 1 and 15 of every month at 06:00"),
            ("@yearly", "every year on 1 January at 00:00"),
            ("0 8 * DEC *", "every day in December at 08:00"),
            ("0 */2 * * *", "every 2 hours at minute 0"),
            ("0 9-17 * * *", "every hour from 09:00 to 17:00"),
            ("*/15 9-17 * * MON-FRI", "every 15 minutes from 09:00 to 17:45 on weekdays"),
            ("*/30 * * * SAT,SUN", "every 30 minutes on Sunday and Saturday"),
            ("0 0 1-31 * MON", "every day at 00:00"),
        ])
    func readsAsEnglish(expression: String, text: String) throws {
        #expect(try CronExpression(expression).humanReadableDescription == text)
    }

    @Test(
        "intricate expressions fall back to the expression as written",
        arguments: ["0 0 13 * FRI", "7-59/13 * * * *", "1,2,3 4,5 * * *", "0 0 */2 * MON", "5 4 1-10 * *"])
    func intricateExpressionFallsBack(expression: String) throws {
        #expect(try CronExpression(expression).humanReadableDescription == expression)
    }
}
