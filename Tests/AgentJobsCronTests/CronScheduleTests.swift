import Foundation
import Testing

@testable import AgentJobsCron

/// Parses an ISO 8601 instant such as `2025-03-09T07:00:00Z` or `2025-03-09T03:00:00-04:00`.
private func instant(_ text: String) -> Date {
    guard let date = try? Date(text, strategy: .iso8601) else {
        Issue.record("bad test timestamp \(text)")
        return .distantPast
    }
    return date
}

@Suite("Cron schedule fire times")
struct CronScheduleTests {
    @Test("the next fire time is strictly after the given instant")
    func nextFireIsStrictlyAfter() throws {
        let schedule = try CronSchedule("30 2 * * *")
        let fire = instant("2025-06-01T02:30:00Z")
        #expect(schedule.nextFire(after: fire) == instant("2025-06-02T02:30:00Z"))
        #expect(schedule.nextFire(after: fire.addingTimeInterval(-0.5)) == fire)
        #expect(schedule.nextFire(after: fire.addingTimeInterval(-60)) == fire)
        #expect(schedule.nextFire(after: fire.addingTimeInterval(0.5)) == instant("2025-06-02T02:30:00Z"))
    }

    @Test("nextFires lists the next N fire times in order")
    func nextFiresListsInOrder() throws {
        let schedule = try CronSchedule("0 9 * * MON-FRI", timeZoneIdentifier: "Europe/Berlin")
        // 2025-06-06 is a Friday; Berlin is at +02:00 in summer.
        let fires = schedule.nextFires(after: instant("2025-06-06T08:00:00Z"), count: 3)
        #expect(
            fires == [
                instant("2025-06-09T07:00:00Z"), instant("2025-06-10T07:00:00Z"), instant("2025-06-11T07:00:00Z"),
            ])
        #expect(schedule.nextFires(after: .now, count: 0).isEmpty)
        #expect(schedule.nextFires(after: .now, count: -3).isEmpty)
    }

    @Test("occurrences cover the half-open interval (start, end]")
    func occurrencesAreHalfOpen() throws {
        let schedule = try CronSchedule("0 * * * *")
        let start = instant("2025-01-01T00:00:00Z")
        let end = instant("2025-01-01T03:00:00Z")
        #expect(
            Array(schedule.occurrences(after: start, through: end)) == [
                instant("2025-01-01T01:00:00Z"), instant("2025-01-01T02:00:00Z"), end,
            ])
        #expect(Array(schedule.occurrences(after: end, through: start)).isEmpty)
    }

    @Test("occurrences over many years jump by fields instead of walking minutes")
    func occurrencesOverManyYearsAreFast() throws {
        let schedule = try CronSchedule("0 0 29 2 *", timeZoneIdentifier: "America/New_York")
        let fires = Array(
            schedule.occurrences(after: instant("2001-01-01T00:00:00Z"), through: instant("2101-01-01T00:00:00Z")))
        #expect(fires.count == 24)  // Leap years 2004...2096; 2100 is not one.
        #expect(fires.last == instant("2096-02-29T00:00:00-05:00"))
        #expect(schedule.nextFire(after: instant("2096-03-01T00:00:00Z")) == instant("2104-02-29T00:00:00-05:00"))
    }

    @Test("a lazy sequence of fire dates can be consumed a few at a time")
    func fireDatesIsLazy() throws {
        let schedule = try CronSchedule("*/20 * * * *")
        let fires = schedule.fireDates(after: instant("2025-01-01T00:00:00Z")).prefix(4)
        #expect(
            Array(fires) == [
                instant("2025-01-01T00:20:00Z"), instant("2025-01-01T00:40:00Z"),
                instant("2025-01-01T01:00:00Z"), instant("2025-01-01T01:20:00Z"),
            ])
    }

    @Test("instants outside years 1-9999 have no next fire time")
    func unsupportedInstantsHaveNoFire() throws {
        let schedule = try CronSchedule("* * * * *")
        #expect(schedule.nextFire(after: Date(timeIntervalSince1970: 300_000_000_000)) == nil)  // year ~11476
        #expect(schedule.nextFire(after: Date(timeIntervalSince1970: .infinity)) == nil)
        #expect(schedule.nextFire(after: Date(timeIntervalSince1970: .nan)) == nil)
        #expect(schedule.nextFire(after: instant("9999-12-31T23:58:00Z")) == instant("9999-12-31T23:59:00Z"))
        #expect(schedule.nextFire(after: instant("9999-12-31T23:59:00Z")) == nil)
        #expect(try CronSchedule("0 0 29 2 *").nextFire(after: instant("9996-03-01T00:00:00Z")) == nil)
    }

    @Test("zones with non-hour offsets fire on their own wall clock")
    func nonHourOffsetZones() throws {
        let kolkata = try CronSchedule("30 2 * * *", timeZoneIdentifier: "Asia/Kolkata")
        #expect(kolkata.nextFire(after: instant("2025-06-01T00:00:00Z")) == instant("2025-06-01T21:00:00Z"))
        let kathmandu = try CronSchedule("30 2 * * *", timeZoneIdentifier: "Asia/Kathmandu")
        #expect(kathmandu.nextFire(after: instant("2025-06-01T00:00:00Z")) == instant("2025-06-01T20:45:00Z"))
    }

    @Test("the description names the expression and the time zone")
    func descriptions() throws {
        let schedule = try CronSchedule("30 2 * * *", timeZoneIdentifier: "America/New_York")
        #expect(schedule.description == "30 2 * * * (America/New_York)")
        #expect(schedule.humanReadableDescription == "every day at 02:30 (America/New_York)")
        #expect(CronSchedule(expression: try CronExpression("@daily")).timeZone.secondsFromGMT() == 0)
    }
}

@Suite("Cron schedule time zones")
struct CronScheduleTimeZoneTests {
    @Test(
        "unknown or non-IANA time zones are refused with the zone named",
        arguments: ["Mars/Olympus_Mons", "america/new_york", "", "GMT+5", "UTC+05:30"])
    func unknownTimeZoneIsRefused(identifier: String) {
        let error = #expect(throws: CronError.self) {
            try CronSchedule("0 0 * * *", timeZoneIdentifier: identifier)
        }
        #expect(error?.code == .unknownTimeZone)
        #expect(error?.field == nil)
        #expect(error?.value == identifier)
        #expect(
            error?.description
                == "unknown time zone \"\(identifier)\"; expected an IANA identifier such as \"Europe/Berlin\" or \"UTC\""
        )
    }

    @Test(
        "IANA identifiers are accepted and kept as written",
        arguments: [
            "UTC", "Etc/UTC", "Etc/GMT-5", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "US/Eastern",
        ])
    func ianaTimeZoneIsAccepted(identifier: String) throws {
        #expect(try CronSchedule("0 0 * * *", timeZoneIdentifier: identifier).timeZoneIdentifier == identifier)
    }

    @Test("an invalid expression is reported before the time zone")
    func expressionErrorComesFirst() {
        let error = #expect(throws: CronError.self) { try CronSchedule("61 * * * *", timeZoneIdentifier: "Nowhere") }
        #expect(error?.field == .minute)
    }

    @Test("schedules round-trip through Codable as cron and timeZone")
    func codableRoundTrip() throws {
        let schedule = try CronSchedule("30 2 * * *", timeZoneIdentifier: "America/New_York")
        let data = try JSONEncoder().encode(schedule)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: String]
        #expect(object == ["cron": "30 2 * * *", "timeZone": "America/New_York"])
        #expect(try JSONDecoder().decode(CronSchedule.self, from: data) == schedule)
        let utc = try JSONDecoder().decode(CronSchedule.self, from: Data(#"{"cron": "@daily"}"#.utf8))
        #expect(utc.timeZoneIdentifier == "UTC")
    }

    @Test("decoding refuses an unknown time zone at the timeZone key")
    func decodingRefusesUnknownZone() {
        let error = #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(CronSchedule.self, from: Data(#"{"cron": "@daily", "timeZone": "Nowhere"}"#.utf8))
        }
        guard case .dataCorrupted(let context) = error else {
            Issue.record("expected dataCorrupted, got \(String(describing: error))")
            return
        }
        #expect(context.codingPath.last?.stringValue == "timeZone")
        #expect(context.debugDescription.contains("\"Nowhere\""))
        #expect((context.underlyingError as? CronError)?.code == .unknownTimeZone)
    }
}

@Suite("Cron schedule daylight saving time")
struct CronScheduleDaylightSavingTests {
    // New York: 2025-03-09 02:00 EST -> 03:00 EDT (07:00Z); 2025-11-02 02:00 EDT -> 01:00 EST (06:00Z).
    // Lord Howe: 2024-10-06 02:00 +10:30 -> 02:30 +11:00 (15:30Z on the 5th);
    //            2024-04-07 02:00 +11:00 -> 01:30 +10:30 (15:00Z on the 6th).

    @Test("a daily 02:30 job fires once at 03:00 EDT on the New York spring-forward day")
    func springForwardGapFiresOnceAfterGap() throws {
        let schedule = try CronSchedule("30 2 * * *", timeZoneIdentifier: "America/New_York")
        let fires = Array(
            schedule.occurrences(after: instant("2025-03-08T00:00:00Z"), through: instant("2025-03-11T00:00:00Z")))
        #expect(
            fires == [
                instant("2025-03-08T02:30:00-05:00"),
                instant("2025-03-09T03:00:00-04:00"),
                instant("2025-03-10T02:30:00-04:00"),
            ])
    }

    @Test("skipped times and a matching gap end fire once at the end of the gap")
    func gapEndFiresOnlyOnce() throws {
        let schedule = try CronSchedule("0,30 2,3 * * *", timeZoneIdentifier: "America/New_York")
        let fires = Array(
            schedule.occurrences(
                after: instant("2025-03-09T00:00:00-05:00"), through: instant("2025-03-09T12:00:00-04:00")))
        #expect(fires == [instant("2025-03-09T03:00:00-04:00"), instant("2025-03-09T03:30:00-04:00")])
    }

    @Test("a job at a skipped time fires at the gap end even when asked from inside the gap's day")
    func nextFireBeforeGapIsGapEnd() throws {
        let schedule = try CronSchedule("45 2 * * *", timeZoneIdentifier: "America/New_York")
        #expect(schedule.nextFire(after: instant("2025-03-09T01:59:59-05:00")) == instant("2025-03-09T03:00:00-04:00"))
        #expect(schedule.nextFire(after: instant("2025-03-09T03:00:00-04:00")) == instant("2025-03-10T02:45:00-04:00"))
    }

    @Test("a daily 01:30 job fires once, at the EDT instance, on the New York fall-back day")
    func fallBackOverlapFiresFirstOccurrenceOnce() throws {
        let schedule = try CronSchedule("30 1 * * *", timeZoneIdentifier: "America/New_York")
        let fires = Array(
            schedule.occurrences(after: instant("2025-11-01T00:00:00Z"), through: instant("2025-11-04T00:00:00Z")))
        #expect(
            fires == [
                instant("2025-11-01T01:30:00-04:00"),
                instant("2025-11-02T01:30:00-04:00"),
                instant("2025-11-03T01:30:00-05:00"),
            ])
    }

    @Test("a frequent job skips the repeated hour instead of running it twice")
    func repeatedHourIsNotRepeated() throws {
        let schedule = try CronSchedule("*/30 * * * *", timeZoneIdentifier: "America/New_York")
        let fires = Array(
            schedule.occurrences(
                after: instant("2025-11-02T00:00:00-04:00"), through: instant("2025-11-02T02:30:00-05:00")))
        #expect(
            fires == [
                instant("2025-11-02T00:30:00-04:00"),
                instant("2025-11-02T01:00:00-04:00"),
                instant("2025-11-02T01:30:00-04:00"),
                instant("2025-11-02T02:00:00-05:00"),
                instant("2025-11-02T02:30:00-05:00"),
            ])
    }

    @Test("asked from inside the repeated hour, the next fire is the first wall time not yet shown")
    func nextFireFromSecondPassOfRepeatedHour() throws {
        let every30 = try CronSchedule("*/30 * * * *", timeZoneIdentifier: "America/New_York")
        #expect(every30.nextFire(after: instant("2025-11-02T01:10:00-05:00")) == instant("2025-11-02T02:00:00-05:00"))
        let daily = try CronSchedule("45 1 * * *", timeZoneIdentifier: "America/New_York")
        #expect(daily.nextFire(after: instant("2025-11-02T01:10:00-04:00")) == instant("2025-11-02T01:45:00-04:00"))
        #expect(daily.nextFire(after: instant("2025-11-02T01:10:00-05:00")) == instant("2025-11-03T01:45:00-05:00"))
    }

    @Test("Lord Howe's 30-minute spring-forward gap fires skipped times at 02:30")
    func lordHoweHalfHourGap() throws {
        let zone = "Australia/Lord_Howe"
        let skipped = try CronSchedule("15 2 * * *", timeZoneIdentifier: zone)
        #expect(skipped.nextFire(after: instant("2024-10-05T12:00:00Z")) == instant("2024-10-06T02:30:00+11:00"))
        let gapStart = try CronSchedule("0 2 * * *", timeZoneIdentifier: zone)
        #expect(gapStart.nextFire(after: instant("2024-10-05T12:00:00Z")) == instant("2024-10-06T02:30:00+11:00"))
        let gapEnd = try CronSchedule("30 2 * * *", timeZoneIdentifier: zone)
        #expect(gapEnd.nextFire(after: instant("2024-10-05T12:00:00Z")) == instant("2024-10-06T02:30:00+11:00"))
        let both = try CronSchedule("0,15,30,45 2 * * *", timeZoneIdentifier: zone)
        #expect(
            both.nextFires(after: instant("2024-10-05T12:00:00Z"), count: 3) == [
                instant("2024-10-06T02:30:00+11:00"), instant("2024-10-06T02:45:00+11:00"),
                instant("2024-10-07T02:00:00+11:00"),
            ])
    }

    @Test("a skipped calendar day (Samoa, December 2011) fires once when the clock resumes")
    func skippedDayFiresOnceAtGapEnd() throws {
        // 2011-12-29 24:00 -10:00 became 2011-12-31 00:00 +14:00: all of 30 December was skipped.
        let schedule = try CronSchedule("0 12 * * *", timeZoneIdentifier: "Pacific/Apia")
        #expect(
            schedule.nextFires(after: instant("2011-12-29T12:00:00-10:00"), count: 2) == [
                instant("2011-12-31T00:00:00+14:00"), instant("2011-12-31T12:00:00+14:00"),
            ])
    }

    @Test("Lord Howe's 30-minute fall-back overlap fires the first occurrence once")
    func lordHoweHalfHourOverlap() throws {
        let schedule = try CronSchedule("45 1 * * *", timeZoneIdentifier: "Australia/Lord_Howe")
        let fires = Array(
            schedule.occurrences(after: instant("2024-04-06T00:00:00Z"), through: instant("2024-04-08T00:00:00Z")))
        #expect(fires == [instant("2024-04-07T01:45:00+11:00"), instant("2024-04-08T01:45:00+10:30")])
        // From the second 01:40, 01:45 has already fired: next is 02:00 +10:30 for a quarter-hourly job.
        let quarterly = try CronSchedule("*/15 * * * *", timeZoneIdentifier: "Australia/Lord_Howe")
        #expect(quarterly.nextFire(after: instant("2024-04-07T01:40:00+10:30")) == instant("2024-04-07T02:00:00+10:30"))
    }
}
