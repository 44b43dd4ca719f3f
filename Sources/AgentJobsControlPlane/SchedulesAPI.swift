import AgentJobsCore
import AgentJobsCron
import AgentJobsStore
import Hummingbird

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension ControlPlaneAPI {
    var scheduleRoutes: [APIRoute] {
        [
            APIRoute(.get, "/api/v1/jobs/:id/schedule", .scope(.read)) { request, context in
                let query = try QueryReader(request, allowed: ["limit"])
                let limit = try Self.limit(query.value("limit"), default: 50, max: 500)
                let id = try context.parameters.require("id")
                guard let record = try await store.job(id: id) else { throw APIError.notFound("no job with id \(id)") }
                let occurrences = try await store.scheduleOccurrences(jobId: id, limit: limit)
                return try JSONResponse.make(ScheduleView(record: record, occurrences: occurrences, now: now))
            },
            APIRoute(.get, "/api/v1/schedules/preview", .scope(.read)) { request, _ in
                let query = try QueryReader(request, allowed: ["cron", "timezone", "count"])
                guard let cron = try query.string("cron") else {
                    throw ValidationError(field: "cron", message: "is required")
                }
                let count = try Self.limit(query.value("count"), default: 5, max: 50, field: "count")
                let schedule = JobSchedule(cron: cron, timezone: try query.string("timezone") ?? "UTC")
                let parsed = try schedule.cronSchedule()
                return try JSONResponse.make(
                    SchedulePreview(
                        description: parsed.humanReadableDescription,
                        nextFireTimes: parsed.nextFires(after: now, count: count)))
            },
        ]
    }

    static func limit(_ text: String?, default value: Int, max: Int, field: String = "limit") throws -> Int {
        guard let text else { return value }
        guard let parsed = Int(text), (1...max).contains(parsed) else {
            throw ValidationError(field: field, message: "must be a whole number between 1 and \(max)")
        }
        return parsed
    }
}

struct SchedulePreview: Encodable {
    var description: String
    var nextFireTimes: [Date]
}

/// A job's schedule: its definition, the next fire times and what became of recent occurrences.
struct ScheduleView: Encodable {
    var record: JobRecord
    var occurrences: [ScheduleOccurrence]
    var now: Date

    enum CodingKeys: String, CodingKey { case jobId, schedule, description, paused, nextFireTimes, occurrences }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(record.job.id, forKey: .jobId)
        try container.encode(record.job.schedule, forKey: .schedule)
        let cron = try? record.job.schedule?.cronSchedule()
        try container.encode(cron?.humanReadableDescription, forKey: .description)
        try container.encode(record.job.schedule?.paused ?? false, forKey: .paused)
        var fireTimes: [Date] = []
        if let cron, record.job.schedule?.paused == false {
            let from = record.scheduleState.map { $0.cursor } ?? now
            fireTimes = cron.nextFires(after: from, count: 5)
        }
        try container.encode(fireTimes, forKey: .nextFireTimes)
        try container.encode(occurrences.map(OccurrenceResource.init), forKey: .occurrences)
    }
}

struct OccurrenceResource: Encodable {
    var occurrence: ScheduleOccurrence

    enum CodingKeys: String, CodingKey { case scheduledAt, outcome, runId, activeRunId, reason, recordedAt }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(occurrence.scheduledAt, forKey: .scheduledAt)
        try container.encode(occurrence.outcome, forKey: .outcome)
        try container.encode(occurrence.runId, forKey: .runId)
        try container.encode(occurrence.activeRunId, forKey: .activeRunId)
        try container.encode(occurrence.reason, forKey: .reason)
        try container.encode(occurrence.recordedAt, forKey: .recordedAt)
    }
}
