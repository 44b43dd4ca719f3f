extension CronExpression {
    /// A short English description for UIs, e.g. `every day at 02:30`, `every 15 minutes`,
    /// `at minute 0 past every hour` or `every Monday at 09:00`.
    ///
    /// Times are local wall-clock times of the schedule's time zone. Expressions too intricate to
    /// describe in one phrase are returned as written (``source``).
    public var humanReadableDescription: String {
        CronDescriber(self).describe() ?? source
    }
}

/// Builds ``CronExpression/humanReadableDescription``: a time phrase plus a day phrase, or nothing
/// when either would be awkward.
private struct CronDescriber {
    let minutes: [Int]
    let hours: [Int]
    let days: [Int]
    let months: [Int]
    let weekdays: [Int]
    let allMinutes: Bool
    let allHours: Bool
    let allDays: Bool
    let allMonths: Bool
    let allWeekdays: Bool

    init(_ expression: CronExpression) {
        minutes = expression.values(of: .minute)
        hours = expression.values(of: .hour)
        days = expression.values(of: .dayOfMonth)
        months = expression.values(of: .month)
        weekdays = expression.values(of: .dayOfWeek)
        allMinutes = minutes.count == 60
        allHours = hours.count == 24
        allMonths = months.count == 12
        let eitherDayRule = !expression.dayOfMonthIsWildcard && !expression.dayOfWeekIsWildcard
        if eitherDayRule && (days.count == 31 || weekdays.count == 7) {
            // `1-31 * MON` matches every day under the either-day rule.
            allDays = true
            allWeekdays = true
        } else {
            allDays = days.count == 31
            allWeekdays = weekdays.count == 7
        }
    }

    private static let weekdayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

    func describe() -> String? {
        if let times = clockTimes() {
            guard let days = dayPhraseBeforeTimes() else { return nil }
            return "\(days) at \(times)"
        }
        guard let periodic = periodicPhrase() else { return nil }
        guard let days = dayPhraseAfterPeriodic() else { return nil }
        return days.isEmpty ? periodic : "\(periodic) \(days)"
    }

    /// `09:00 and 17:30` when the expression fires at a few fixed times of day.
    private func clockTimes() -> String? {
        guard minutes.count * hours.count <= 4 else { return nil }
        let times = hours.flatMap { hour in minutes.map { Self.clock(hour, $0) } }
        return CronExpression.joinedList(times)
    }

    /// `every 15 minutes`, `every hour from 09:00 to 17:00`, ... for sub-daily repetition.
    private func periodicPhrase() -> String? {
        let minuteStep = Self.evenStep(minutes, period: 60)
        if allHours {
            if allMinutes { return "every minute" }
            if let step = minuteStep { return "every \(step) minutes" }
            if minutes.count == 1 { return "at minute \(minutes[0]) past every hour" }
            return nil
        }
        if minutes.count == 1, let step = Self.evenStep(hours, period: 24) {
            return "every \(step) hours at minute \(minutes[0])"
        }
        guard let first = hours.first, let last = hours.last, hours.count == last - first + 1 else { return nil }
        if minutes.count == 1 {
            return "every hour from \(Self.clock(first, minutes[0])) to \(Self.clock(last, minutes[0]))"
        }
        if allMinutes {
            return "every minute from \(Self.clock(first, 0)) to \(Self.clock(last, 59))"
        }
        if let step = minuteStep, let lastMinute = minutes.last {
            return "every \(step) minutes from \(Self.clock(first, 0)) to \(Self.clock(last, lastMinute))"
        }
        return nil
    }

    /// `every day`, `every Monday`, `on day 1 of every month`, `every year on 1 January`, ...
    private func dayPhraseBeforeTimes() -> String? {
        switch (allDays, allWeekdays) {
        case (true, true):
            return allMonths ? "every day" : "every day in \(monthList())"
        case (true, false):
            return "every \(weekdayList())" + (allMonths ? "" : " in \(monthList())")
        case (false, true):
            if months.count == 1, days.count <= 3 {
                return "every year on \(CronExpression.joinedList(days.map(String.init))) \(monthList())"
            }
            return dayOfMonthPhrase()
        case (false, false):
            return nil  // Either rule (day-of-month OR day-of-week) reads badly in one phrase.
        }
    }

    /// The same as ``dayPhraseBeforeTimes()`` but phrased to follow `every 15 minutes`.
    private func dayPhraseAfterPeriodic() -> String? {
        switch (allDays, allWeekdays) {
        case (true, true):
            return allMonths ? "" : "in \(monthList())"
        case (true, false):
            let days = weekdays == [1, 2, 3, 4, 5] ? "weekdays" : weekdayList()
            return "on \(days)" + (allMonths ? "" : " in \(monthList())")
        case (false, true):
            return dayOfMonthPhrase()
        case (false, false):
            return nil
        }
    }

    private func dayOfMonthPhrase() -> String? {
        guard days.count <= 3 else { return nil }
        let noun = days.count == 1 ? "day" : "days"
        let monthsText = allMonths ? "every month" : monthList()
        return "on \(noun) \(CronExpression.joinedList(days.map(String.init))) of \(monthsText)"
    }

    private func weekdayList() -> String {
        if weekdays == [1, 2, 3, 4, 5] { return "weekday" }
        return CronExpression.joinedList(weekdays.map { Self.weekdayNames[$0] })
    }

    private func monthList() -> String {
        CronExpression.joinedList(months.map { CronExpression.monthFullNames[$0 - 1] })
    }

    /// The step `n` when `values` is exactly `0, n, 2n, ...` and `n` divides the period (more than once).
    private static func evenStep(_ values: [Int], period: Int) -> Int? {
        guard values.count > 1, values[0] == 0 else { return nil }
        let step = values[1]
        guard period % step == 0, values.count == period / step else { return nil }
        return values.enumerated().allSatisfy { $0.element == $0.offset * step } ? step : nil
    }

    private static func clock(_ hour: Int, _ minute: Int) -> String {
        (hour < 10 ? "0" : "") + String(hour) + ":" + (minute < 10 ? "0" : "") + String(minute)
    }
}
