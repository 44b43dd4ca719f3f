import AgentJobsCron

extension JobSchedule {
    /// The schedule as a ``CronSchedule`` that computes fire times.
    /// - Throws: ``ValidationError`` naming `schedule.cron` (with the bad cron field) or `schedule.timezone`.
    public func cronSchedule() throws -> CronSchedule {
        do {
            return try CronSchedule(cron, timeZoneIdentifier: timezone)
        } catch {
            if error.code == .unknownTimeZone {
                throw ValidationError(field: "schedule.timezone", message: error.message)
            }
            throw ValidationError(field: "schedule.cron", message: error.description)
        }
    }

    /// Checks the cron expression and time zone.
    /// - Throws: ``ValidationError`` naming `schedule.cron` or `schedule.timezone`.
    public func validate() throws {
        _ = try cronSchedule()
    }
}
