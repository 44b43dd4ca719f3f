import Foundation

/// A cron expression evaluated on the wall clock of an IANA time zone.
///
/// Fire times follow these daylight-saving rules (see `docs/scheduling.md`):
/// - a matching wall-clock minute that occurs once fires at that instant;
/// - in a repeated hour (clocks go back), a matching wall-clock time fires once, at its first
///   (earlier) occurrence;
/// - in a skipped hour (clocks go forward), matching wall-clock times that do not exist fire once,
///   at the first instant after the gap (a daily 02:30 job fires at 03:00 on the day New York
///   springs forward); an instant fires at most once even when it also matches itself.
public struct CronSchedule: Sendable, Hashable, CustomStringConvertible {
    /// When the schedule fires, in wall-clock terms.
    public let expression: CronExpression
    /// The time zone whose wall clock the expression reads.
    public let timeZone: TimeZone
    /// The time zone identifier as written by the user (e.g. `UTC`, which Foundation reports as
    /// `GMT`), or the `TimeZone`'s own identifier when the schedule was created from a `TimeZone`.
    public let timeZoneIdentifier: String

    /// The oldest and newest instants that schedules compute with: years 1 through 9999.
    private static let supportedSeconds: ClosedRange<Double> = -62_135_596_800...253_402_300_799

    /// Creates a schedule from a parsed expression and a time zone.
    /// - Parameters:
    ///   - expression: When the schedule fires.
    ///   - timeZone: Whose wall clock the expression reads; UTC when omitted.
    public init(expression: CronExpression, timeZone: TimeZone = .gmt) {
        self.expression = expression
        self.timeZone = timeZone
        self.timeZoneIdentifier = timeZone.identifier
    }

    /// Parses an expression and resolves an IANA time zone identifier.
    /// - Parameters:
    ///   - expression: A five-field cron expression or a macro such as `@daily`.
    ///   - timeZoneIdentifier: An IANA identifier such as `America/New_York`; `UTC` when omitted.
    /// - Throws: ``CronError`` for an invalid expression (naming the field), or with code
    ///   ``CronError/Code/unknownTimeZone`` when the identifier is not a known IANA time zone.
    public init(_ expression: String, timeZoneIdentifier: String = "UTC") throws(CronError) {
        self.expression = try CronExpression(expression)
        self.timeZone = try Self.resolveTimeZone(timeZoneIdentifier)
        self.timeZoneIdentifier = timeZoneIdentifier
    }

    /// The expression and time zone as written, e.g. `30 2 * * * (America/New_York)`.
    public var description: String { "\(expression.source) (\(timeZoneIdentifier))" }

    /// A short English description for UIs, e.g. `every day at 02:30 (America/New_York)`.
    public var humanReadableDescription: String {
        "\(expression.humanReadableDescription) (\(timeZoneIdentifier))"
    }

    // MARK: - Fire times

    /// The first fire time strictly after a date.
    /// - Parameters:
    ///   - date: The instant to search from; it is never returned itself.
    /// - Returns: The next fire time, or `nil` when there is none before the year 10000.
    public func nextFire(after date: Date) -> Date? {
        guard let start = Self.wholeSeconds(date), let fire = nextFireSecond(after: start) else { return nil }
        return Date(timeIntervalSince1970: Double(fire))
    }

    /// The next fire times strictly after a date, in order.
    /// - Parameters:
    ///   - date: The instant to search from; it is never returned itself.
    ///   - count: How many fire times to return at most; negative counts return none.
    /// - Returns: Up to `count` fire times (fewer only when the schedule ends before the year 10000).
    public func nextFires(after date: Date, count: Int) -> [Date] {
        Array(fireDates(after: date).prefix(max(0, count)))
    }

    /// All fire times after a date, lazily and in order.
    /// - Parameters:
    ///   - date: The instant to search from; it is never returned itself.
    public func fireDates(after date: Date) -> FireDates {
        FireDates(schedule: self, start: date, end: nil)
    }

    /// The fire times in the half-open interval (`start`, `end`], lazily and in order.
    ///
    /// A scheduler catching up after downtime asks for the fire times it missed, from the last
    /// instant it handled (exclusive) to now (inclusive). Each step jumps field by field, so long
    /// intervals cost time in proportion to the number of fire times, not of minutes.
    /// - Parameters:
    ///   - start: The exclusive lower bound.
    ///   - end: The inclusive upper bound; an `end` before `start` yields nothing.
    public func occurrences(after start: Date, through end: Date) -> FireDates {
        FireDates(schedule: self, start: start, end: end)
    }

    /// A lazy, ordered sequence of fire times.
    public struct FireDates: Sequence, Sendable {
        let schedule: CronSchedule
        let start: Date
        let end: Date?

        /// Creates an iterator from the first fire time after the start.
        public func makeIterator() -> Iterator {
            Iterator(schedule: schedule, last: CronSchedule.wholeSeconds(start), end: end?.timeIntervalSince1970)
        }

        /// Produces the fire times of a ``FireDates`` sequence one at a time.
        public struct Iterator: IteratorProtocol, Sendable {
            let schedule: CronSchedule
            var last: Int?
            let end: Double?

            /// The next fire time, or `nil` when the sequence is over.
            public mutating func next() -> Date? {
                guard let previous = last, let fire = schedule.nextFireSecond(after: previous) else {
                    last = nil
                    return nil
                }
                if let end, Double(fire) > end {
                    last = nil
                    return nil
                }
                last = fire
                return Date(timeIntervalSince1970: Double(fire))
            }
        }
    }

    // MARK: - Computation in whole seconds
    //
    // Instants are Unix seconds; wall-clock times are "local seconds" (the Unix seconds the same
    // wall-clock reading would have in UTC). Every fire time is either the first instant of a
    // matching local minute or the end of a gap (a transition instant), so whole seconds suffice.

    /// `floor(date)` in Unix seconds, or `nil` outside the supported years.
    private static func wholeSeconds(_ date: Date) -> Int? {
        let seconds = date.timeIntervalSince1970
        guard supportedSeconds.contains(seconds) else { return nil }
        return Int(seconds.rounded(.down))
    }

    /// The first fire instant strictly after `instant`, or `nil` if there is none before the year 10000.
    ///
    /// Mapping a local minute to its fire instant (first occurrence, or end of its gap) is monotone,
    /// so the answer is the fire instant of the first matching local minute that comes after
    /// everything the clock has shown up to `after`.
    func nextFireSecond(after instant: Int) -> Int? {
        var searchFrom = GregorianCalendar.floorDiv(instant + offset(at: instant), 60) * 60 + 60
        // At most two rounds: the second only when `instant` is in the second pass of a repeated hour.
        for _ in 0..<3 {
            guard let local = nextMatchingLocalMinute(atOrAfter: searchFrom) else { return nil }
            let fire = fireInstant(forLocal: local)
            if fire > instant { return Double(fire) <= Self.supportedSeconds.upperBound ? fire : nil }
            searchFrom = max(local + 60, endOfRepeatedTime(firstPass: fire, secondPass: instant))
        }
        return nil
    }

    /// The fire instant for a matching local minute: its first occurrence, or if it falls in a gap,
    /// the first instant after the gap.
    private func fireInstant(forLocal local: Int) -> Int {
        // Any instant showing `local` lies within 15 hours of it (UTC offsets are within -12...+14 h);
        // the offsets at the window's ends are those on either side of any nearby transition.
        let window = 15 * 3600
        let before = offset(at: local - window)
        let after = offset(at: local + window)
        if before == after, offset(at: local - before) == before {
            return local - before  // No transition nearby: the common case.
        }
        var firstOccurrence: Int?
        for candidate in [local - before, local - after] where offset(at: candidate) == local - candidate {
            firstOccurrence = min(firstOccurrence ?? candidate, candidate)
        }
        if let firstOccurrence { return firstOccurrence }
        // A gap: the wall clock jumps over `local`; fire at the first instant showing a later time.
        let low = local - max(before, after)
        let high = local - min(before, after)
        guard low < high else { return local - after }
        return firstInstant(from: low, to: high) { $0 + offset(at: $0) > local }
    }

    /// The local time at which the repeated wall-clock range containing `secondPass` ends.
    ///
    /// `firstPass` is an earlier instant showing the same wall-clock minute as one after
    /// `secondPass`'s; the clock went back between them.
    private func endOfRepeatedTime(firstPass: Int, secondPass: Int) -> Int {
        let offsetBefore = offset(at: firstPass)
        guard firstPass < secondPass else { return secondPass + offset(at: secondPass) + 60 }
        let transition = firstInstant(from: firstPass, to: secondPass) { offset(at: $0) != offsetBefore }
        return GregorianCalendar.floorDiv(transition + offsetBefore + 59, 60) * 60
    }

    /// The smallest instant in (`low`, `high`] satisfying a predicate that is false at `low`,
    /// true at `high` and switches once.
    private func firstInstant(from low: Int, to high: Int, where predicate: (Int) -> Bool) -> Int {
        var low = low
        var high = high
        while high - low > 1 {
            let middle = low + (high - low) / 2
            if predicate(middle) { high = middle } else { low = middle }
        }
        return high
    }

    /// The first local minute at or after `start` (a whole local minute) that matches the expression.
    private func nextMatchingLocalMinute(atOrAfter start: Int) -> Int? {
        let e = expression
        var dayNumber = GregorianCalendar.floorDiv(start, 86_400)
        var (year, month, day) = GregorianCalendar.civil(fromDays: dayNumber)
        let secondOfDay = start - dayNumber * 86_400
        var hour = secondOfDay / 3600
        var minute = (secondOfDay % 3600) / 60
        // Every valid expression fires within 8 years (29 February); 400 years is a full Gregorian cycle.
        let lastYear = year + 400
        while year <= lastYear {
            guard CronExpression.contains(e.months, month) else {
                if let next = CronExpression.nextValue(in: e.months, atOrAfter: month + 1) {
                    month = next
                } else {
                    year += 1
                    month = CronExpression.nextValue(in: e.months, atOrAfter: 1) ?? 1
                }
                (day, hour, minute) = (1, 0, 0)
                continue
            }
            guard day <= GregorianCalendar.daysInMonth(year: year, month: month) else {
                month += 1
                if month > 12 { (year, month) = (year + 1, 1) }
                (day, hour, minute) = (1, 0, 0)
                continue
            }
            dayNumber = GregorianCalendar.days(fromCivil: year, month, day)
            guard e.dayMatches(day: day, weekday: GregorianCalendar.floorMod(dayNumber + 4, 7)) else {
                (day, hour, minute) = (day + 1, 0, 0)
                continue
            }
            guard let nextHour = CronExpression.nextValue(in: e.hours, atOrAfter: hour), nextHour < 24 else {
                (day, hour, minute) = (day + 1, 0, 0)
                continue
            }
            if nextHour != hour { (hour, minute) = (nextHour, 0) }
            guard let nextMinute = CronExpression.nextValue(in: e.minutes, atOrAfter: minute), nextMinute < 60 else {
                (hour, minute) = (hour + 1, 0)
                continue
            }
            return dayNumber * 86_400 + hour * 3600 + nextMinute * 60
        }
        return nil
    }

    @inline(__always)
    private func offset(at instant: Int) -> Int {
        timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(instant)))
    }

    // MARK: - Time zones

    /// Resolves an IANA identifier, refusing unknown names and ad-hoc offsets such as `GMT+5`
    /// (whose sign is the opposite of IANA's `Etc/GMT+5`).
    static func resolveTimeZone(_ identifier: String) throws(CronError) -> TimeZone {
        guard let zone = TimeZone(identifier: identifier),
            !zone.identifier.hasPrefix("GMT+"), !zone.identifier.hasPrefix("GMT-")
        else {
            throw CronError(
                code: .unknownTimeZone, field: nil, value: identifier,
                reason:
                    "unknown time zone \"\(identifier)\"; expected an IANA identifier such as \"Europe/Berlin\" or \"UTC\""
            )
        }
        return zone
    }
}

// MARK: - Codable

extension CronSchedule: Codable {
    private enum CodingKeys: String, CodingKey {
        case cron
        case timeZone
    }

    /// Decodes `{"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}`; `timeZone` defaults to UTC.
    /// - Parameters:
    ///   - decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` at the offending key, whose underlying error is the
    ///   ``CronError``; or the decoder's own errors for missing or mistyped keys.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let expression = try container.decode(CronExpression.self, forKey: .cron)
        let identifier = try container.decodeIfPresent(String.self, forKey: .timeZone) ?? "UTC"
        do {
            self.timeZone = try Self.resolveTimeZone(identifier)
        } catch {
            let context = DecodingError.Context(
                codingPath: container.codingPath + [CodingKeys.timeZone], debugDescription: error.description,
                underlyingError: error)
            throw DecodingError.dataCorrupted(context)
        }
        self.expression = expression
        self.timeZoneIdentifier = identifier
    }

    /// Encodes the schedule as `{"cron": ..., "timeZone": ...}`.
    /// - Parameters:
    ///   - encoder: The encoder to write to.
    /// - Throws: Whatever the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(expression, forKey: .cron)
        try container.encode(timeZoneIdentifier, forKey: .timeZone)
    }
}
