import Foundation
import Testing

@testable import AgentJobsCron

/// Compares `CronSchedule` with a brute-force reference that walks UTC minute by minute.
@Suite("Cron schedule against a minute-by-minute reference")
struct CronSchedulePropertyTests {
    static let zones = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]

    /// Hand-picked expressions aimed at DST edges (01:00-03:59 local), the day rules and leap days.
    static let fixedExpressions = [
        "30 2 * * *", "30 1 * * *", "0 2 * * *", "0 3 * * *", "0,30 2,3 * * *", "45 1 * * *",
        "15 2 * * SUN", "*/30 0-3 * * *", "*/10 1-3 * * 0", "0 */2 * * *", "@hourly", "@daily",
        "@weekly", "@monthly", "@yearly", "0 0 29 2 *", "0 12 13 * FRI", "0 0 */2 * MON",
        "59 23 31 12 *", "0 9 * * MON-FRI",
        "59 1 * * *", "0 1 * 3,4,10,11 *", "15,45 1,2 * * *",
    ]

    /// Frequent expressions: too many fire times for two years in a debug build, so they are
    /// compared only in windows around every transition.
    static let frequentExpressions = ["* * * * *", "*/5 * * * *", "*/15 * * * *", "7-59/13 0-4 * * *"]

    static let randomExpressions: [String] = {
        var generator = RandomCronGenerator(seed: 0x00C0_FFEE_2024)
        return (0..<16).map { _ in generator.next() }
    }()

    static let rangeStart = 1_704_067_200  // 2024-01-01T00:00:00Z
    static let rangeEnd = 1_767_225_600  // 2026-01-01T00:00:00Z

    @Test("every fire time over 2024-2025 matches the reference", arguments: zones)
    func fireTimesOverTwoYearsMatchReference(zone: String) throws {
        let timeZone = try #require(TimeZone(identifier: zone))
        let expressions = try (Self.fixedExpressions + Self.randomExpressions)
            .map { try CronExpression($0) }
            .filter { estimatedFiresPerDay($0) <= 240 }
        #expect(expressions.count >= Self.fixedExpressions.count)
        let reference = CronReferenceScheduler(timeZone: timeZone, expressions: expressions)
        let expected = reference.fireTimes(after: Self.rangeStart, through: Self.rangeEnd)

        var rng = CronSplitMix64(seed: 42)
        for (index, expression) in expressions.enumerated() {
            let schedule = CronSchedule(expression: expression, timeZone: timeZone)
            let actual = schedule.occurrences(after: date(Self.rangeStart), through: date(Self.rangeEnd))
                .map { Int($0.timeIntervalSince1970) }
            expectSameFireTimes(actual, expected[index], "\(expression) in \(zone)")

            // From arbitrary instants (not only from fire times), including fractional seconds.
            for _ in 0..<200 {
                let from =
                    Double(Self.rangeStart) + Double(rng.next() % UInt64(Self.rangeEnd - Self.rangeStart - 86_400 * 62))
                    + Double(rng.next() % 1000) / 1000
                let got = schedule.nextFire(after: date(from)).map { Int($0.timeIntervalSince1970) }
                if let want = firstFire(in: expected[index], after: from) {
                    #expect(got == want, "\(expression) in \(zone) after \(date(from))")
                } else {
                    #expect(got.map { $0 > Self.rangeEnd } ?? true, "\(expression) in \(zone) after \(date(from))")
                }
            }
        }
    }

    @Test("fire times around every transition in 2024-2030 match the reference", arguments: zones)
    func fireTimesAroundEveryTransitionMatchReference(zone: String) throws {
        let timeZone = try #require(TimeZone(identifier: zone))
        let transitions = transitionInstants(of: timeZone, from: 1_704_067_200, to: 1_924_992_000)  // 2024..2031
        let expectedCount = ["America/New_York": 14, "Europe/Berlin": 14, "Australia/Lord_Howe": 14]
        #expect(transitions.count == expectedCount[zone, default: 0], "transitions in \(zone)")
        // Zones without transitions still get a few windows, at arbitrary instants.
        let centers = transitions.isEmpty ? [1_711_846_800, 1_730_600_040, 1_900_000_020] : transitions

        let expressions = try (Self.fixedExpressions + Self.frequentExpressions + Self.randomExpressions)
            .map { try CronExpression($0) }
        let reference = CronReferenceScheduler(timeZone: timeZone, expressions: expressions)
        let schedules = expressions.map { CronSchedule(expression: $0, timeZone: timeZone) }
        for center in centers {
            let start = center - 36 * 3600
            let end = center + 36 * 3600
            let expected = reference.fireTimes(after: start, through: end)
            for (index, schedule) in schedules.enumerated() {
                let label = "\(schedule.expression) in \(zone) around \(date(center))"
                let actual = schedule.occurrences(after: date(start), through: date(end))
                    .map { Int($0.timeIntervalSince1970) }
                expectSameFireTimes(actual, expected[index], label)

                // From instants all through the transition day, including inside gaps and overlaps.
                for from in stride(from: center - 3 * 3600 + 17, to: center + 3 * 3600, by: 7 * 60) {
                    guard let want = firstFire(in: expected[index], after: Double(from)) else { break }
                    let got = schedule.nextFire(after: date(from)).map { Int($0.timeIntervalSince1970) }
                    #expect(got == want, "\(label) after \(date(from))")
                }
            }
        }
    }

    @Test("the random expression generator produces varied, valid expressions")
    func randomExpressionsAreValid() throws {
        for text in Self.randomExpressions {
            _ = try CronExpression(text)
        }
        #expect(Set(Self.randomExpressions).count == Self.randomExpressions.count)
    }

    // MARK: - Helpers

    private func date(_ seconds: Int) -> Date { Date(timeIntervalSince1970: Double(seconds)) }
    private func date(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }

    private func expectSameFireTimes(
        _ actual: [Int], _ expected: [Int], _ label: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard actual != expected else { return }
        let firstDifference =
            zip(actual, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            ?? min(actual.count, expected.count)
        let got = firstDifference < actual.count ? "\(date(actual[firstDifference]))" : "nothing"
        let want = firstDifference < expected.count ? "\(date(expected[firstDifference]))" : "nothing"
        Issue.record(
            "\(label): \(actual.count) fire times, reference \(expected.count); first difference #\(firstDifference): got \(got), want \(want)",
            sourceLocation: sourceLocation)
    }

    /// The first fire time after an instant, by binary search.
    private func firstFire(in fires: [Int], after instant: Double) -> Int? {
        var low = 0
        var high = fires.count
        while low < high {
            let middle = (low + high) / 2
            if Double(fires[middle]) > instant { high = middle } else { low = middle + 1 }
        }
        return low < fires.count ? fires[low] : nil
    }

    /// A rough upper bound of fire times per day, to keep the two-year comparison fast.
    private func estimatedFiresPerDay(_ expression: CronExpression) -> Int {
        expression.values(of: .minute).count * expression.values(of: .hour).count
    }

    /// Offset changes of a zone in [from, to), as reported by Foundation.
    private func transitionInstants(of zone: TimeZone, from: Int, to: Int) -> [Int] {
        var instants: [Int] = []
        var cursor = date(from)
        while let next = zone.nextDaylightSavingTimeTransition(after: cursor), next < date(to) {
            instants.append(Int(next.timeIntervalSince1970))
            cursor = next
        }
        return instants
    }
}

/// The brute-force definition of when a schedule fires, written for clarity rather than speed.
///
/// It walks UTC minute by minute. A "wall-clock cursor" remembers the latest local minute the
/// clock has shown. At each UTC minute the cursor advances, one local minute at a time, up to the
/// current local time: normally one step; through a gap, every skipped minute too; inside a
/// repeated hour, not at all. The UTC minute fires when any minute the cursor stepped onto matches.
/// That is the DST contract: once-only minutes fire when they occur, repeated ones at their first
/// occurrence, skipped ones at the first instant after the gap, and each instant at most once.
struct CronReferenceScheduler {
    let timeZone: TimeZone
    let expressions: [CronExpression]

    /// Fire times in (start, end], one list per expression. `start` must be a whole UTC minute that
    /// is not inside a repeated hour.
    func fireTimes(after start: Int, through end: Int) -> [[Int]] {
        var fires = Array(repeating: [Int](), count: expressions.count)
        var cursor = CronWallClockCursor(localSeconds: start + offset(start))
        // Only a speed-up: expressions that match some minute of the cursor's current hour (the
        // check uses a minute the expression allows, so it is exact). Minutes are still checked
        // one by one with `matches`.
        let anyMinute = expressions.map { $0.values(of: .minute)[0] }
        func active(in cursor: CronWallClockCursor) -> [Int] {
            expressions.indices.filter {
                expressions[$0].matches(
                    minute: anyMinute[$0], hour: cursor.hour, day: cursor.day, month: cursor.month,
                    weekday: cursor.weekday)
            }
        }
        var activeThisHour = active(in: cursor)
        var matched: [Int] = []
        var instant = start + 60
        while instant <= end {
            let local = instant + offset(instant)
            matched.removeAll(keepingCapacity: true)
            while cursor.localSeconds < local {
                cursor.advanceOneMinute()
                if cursor.minute == 0 { activeThisHour = active(in: cursor) }
                for index in activeThisHour
                where expressions[index].matches(
                    minute: cursor.minute, hour: cursor.hour, day: cursor.day, month: cursor.month,
                    weekday: cursor.weekday)
                {
                    matched.append(index)
                }
            }
            for index in matched where fires[index].last != instant { fires[index].append(instant) }
            instant += 60
        }
        #expect(cursor.mismatchesWithFoundation == 0, "wall-clock cursor drifted from Foundation's calendar")
        return fires
    }

    private func offset(_ instant: Int) -> Int {
        timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(instant)))
    }
}

/// A local date and time that counts minutes like an odometer, checked daily against Foundation.
struct CronWallClockCursor {
    private(set) var localSeconds: Int
    private(set) var year = 0
    private(set) var month = 0
    private(set) var day = 0
    private(set) var hour = 0
    private(set) var minute = 0
    private(set) var weekday = 0  // 0 = Sunday
    private(set) var mismatchesWithFoundation = 0

    private static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .gmt
        return calendar
    }()

    init(localSeconds: Int) {
        self.localSeconds = localSeconds
        let fields = Self.foundationFields(localSeconds)
        (year, month, day, hour, minute, weekday) = fields
    }

    mutating func advanceOneMinute() {
        localSeconds += 60
        minute += 1
        guard minute == 60 else { return }
        minute = 0
        hour += 1
        guard hour == 24 else { return }
        hour = 0
        weekday = (weekday + 1) % 7
        day += 1
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let length = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        if day > length {
            day = 1
            month += 1
            if month > 12 {
                month = 1
                year += 1
            }
        }
        if Self.foundationFields(localSeconds) != (year, month, day, hour, minute, weekday) {
            mismatchesWithFoundation += 1
        }
    }

    private static func foundationFields(_ localSeconds: Int) -> (Int, Int, Int, Int, Int, Int) {
        let parts = calendar.dateComponents(
            [.year, .month, .day, .hour, .minute, .weekday], from: Date(timeIntervalSince1970: Double(localSeconds)))
        return (
            parts.year ?? 0, parts.month ?? 0, parts.day ?? 0, parts.hour ?? 0, parts.minute ?? 0,
            (parts.weekday ?? 1) - 1
        )
    }
}

/// A small deterministic RNG (SplitMix64) so that "random" expressions are the same on every run.
struct CronSplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Generates valid cron expressions using every syntax form, biased towards the small hours
/// (where DST transitions happen) and towards sparse minutes (to keep fire counts manageable).
struct RandomCronGenerator {
    private var rng: CronSplitMix64
    private var produced: Set<String> = []

    init(seed: UInt64) { rng = CronSplitMix64(seed: seed) }

    mutating func next() -> String {
        while true {
            let text = [
                field(0, 59, star: 0.05, names: nil),
                field(0, 23, star: 0.15, names: nil, favour: 0...4),
                field(1, 31, star: 0.6, names: nil),
                field(
                    1, 12, star: 0.7,
                    names: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]),
                field(0, 7, star: 0.6, names: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]),
            ].joined(separator: " ")
            if (try? CronExpression(text)) != nil, produced.insert(text).inserted { return text }
        }
    }

    private mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    private mutating func chance(_ probability: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < probability }

    private mutating func value(_ low: Int, _ high: Int, names: [String]?, favour: ClosedRange<Int>?) -> (Int, String) {
        let number = (favour != nil && chance(0.6)) ? int(favour ?? low...high) : int(low...high)
        if let names, chance(0.4) {
            let name = names[number - low]
            return (number, chance(0.5) ? name : name.lowercased())
        }
        return (number, String(number))
    }

    private mutating func field(
        _ low: Int, _ high: Int, star: Double, names: [String]?, favour: ClosedRange<Int>? = nil
    ) -> String {
        if chance(star) { return "*" }
        let elements = int(1...3)
        return (0..<elements).map { _ in element(low, high, names: names, favour: favour) }.joined(separator: ",")
    }

    private mutating func element(_ low: Int, _ high: Int, names: [String]?, favour: ClosedRange<Int>?) -> String {
        switch int(0...9) {
        case 0...4:
            return value(low, high, names: names, favour: favour).1
        case 5, 6:
            let (a, aText) = value(low, high, names: names, favour: favour)
            let (b, bText) = value(low, high, names: names, favour: favour)
            return a <= b ? "\(aText)-\(bText)" : "\(bText)-\(aText)"
        case 7:
            return "*/\(int(2...max(2, (high - low) / 2)))"
        case 8:
            let (a, aText) = value(low, high, names: names, favour: favour)
            let (b, bText) = value(low, high, names: names, favour: favour)
            let range = a <= b ? "\(aText)-\(bText)" : "\(bText)-\(aText)"
            return "\(range)/\(int(1...max(1, high - low)))"
        default:
            let (_, aText) = value(low, high, names: names, favour: favour)
            return "\(aText)/\(int(1...max(1, high - low)))"
        }
    }
}
