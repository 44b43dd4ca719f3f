import AgentJobsCore
import AgentJobsStore
import AgentJobsTelemetry
import Hummingbird

extension ControlPlaneAPI {
    var jobRoutes: [APIRoute] {
        [
            APIRoute(.post, "/api/v1/jobs", .scope(.write)) { request, context in
                let definition = try JobDefinition.parseCreate(try await JSONResponse.requiredBody(of: request))
                let job = try await store.createJob(definition, by: context.principal?.requester, now: now)
                return try JSONResponse.make(status: .created, JobResource(record: JobRecord(job: job, lastRun: nil)))
            },
            APIRoute(.get, "/api/v1/jobs", .scope(.read)) { request, _ in
                let query = try QueryReader(
                    request, allowed: ["hostId", "agentType", "name", "q", "lastStatus", "cursor", "limit"])
                let lastRun = try query.string("lastStatus").map { name -> JobFilter.LastRun in
                    if name == "never" { return .never }
                    guard let status = RunStatus(rawValue: name) else {
                        throw ValidationError(
                            field: "lastStatus",
                            message: "must be a run status ("
                                + RunStatus.allCases.map(\.rawValue).joined(separator: ", ")
                                + ") or never")
                    }
                    return .status(status)
                }
                let filter = JobFilter(
                    hostId: try query.string("hostId"),
                    agentType: try query.string("agentType").map { try AgentType.parse($0, field: "agentType") },
                    name: try query.string("name"), nameContains: try query.string("q"), lastRun: lastRun)
                let limit = try query.value("limit").map {
                    try Self.limit($0, default: Self.defaultPageSize, max: Self.maxPageSize)
                }
                let page = try await store.listJobs(filter, cursor: try query.string("cursor"), limit: limit)
                return try JSONResponse.make(
                    JobPageResponse(
                        jobs: page.jobs.map(JobResource.init), nextCursor: page.nextCursor, total: page.total))
            },
            APIRoute(.get, "/api/v1/jobs/:id", .scope(.read)) { _, context in
                try JSONResponse.make(JobResource(record: try await jobRecord(context)))
            },
            APIRoute(.patch, "/api/v1/jobs/:id", .scope(.write)) { request, context in
                let body = try await JSONResponse.requiredBody(of: request)
                let current = try await jobRecord(context)
                let definition = try JobDefinition(current.job).applyingPatch(body)
                let job = try await store.updateJob(
                    id: current.job.id, expectedVersion: current.job.version, definition: definition,
                    by: context.principal?.requester, now: now)
                return try JSONResponse.make(JobResource(record: JobRecord(job: job, lastRun: current.lastRun)))
            },
            APIRoute(.delete, "/api/v1/jobs/:id", .scope(.write)) { _, context in
                try await store.deleteJob(
                    id: try context.parameters.require("id"), by: context.principal?.requester, now: now)
                return Response(status: .noContent)
            },
            APIRoute(.post, "/api/v1/jobs/:id/runs", .scope(.write)) { request, context in
                var trigger = RunTrigger.api
                if let body = try await JSONResponse.body(of: request) {
                    var reader = try JSONObjectReader(body)
                    if let name = try reader.string("trigger") {
                        guard let parsed = RunTrigger(rawValue: name), parsed == .manual || parsed == .api else {
                            throw ValidationError(field: "trigger", message: "must be 'manual' or 'api'")
                        }
                        trigger = parsed
                    }
                    try reader.rejectUnknownFields()
                }
                let run = try await store.triggerRun(
                    jobId: try context.parameters.require("id"), trigger: trigger, scheduledAt: nil, rerunOf: nil,
                    triggeredBy: context.principal?.requester, now: now, traceParent: RunTracing.currentTraceParent())
                RunMetrics.created(trigger)
                return JSONResponse.make(status: .created, RunResource(run: run))
            },
        ]
    }

    private func jobRecord(_ context: AgentJobsRequestContext) async throws -> JobRecord {
        let id = try context.parameters.require("id")
        guard let record = try await store.job(id: id) else { throw APIError.notFound("no job with id \(id)") }
        return record
    }
}

struct JobPageResponse: Encodable {
    var jobs: [JobResource]
    var nextCursor: String?
    /// Jobs matching the filters, on every page.
    var total: Int

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(jobs, forKey: .jobs)
        try container.encode(nextCursor, forKey: .nextCursor)
        try container.encode(total, forKey: .total)
    }

    enum CodingKeys: String, CodingKey { case jobs, nextCursor, total }
}
