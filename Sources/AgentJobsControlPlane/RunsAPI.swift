import AgentJobsCore
import AgentJobsStore
import AgentJobsTelemetry
import Hummingbird

extension ControlPlaneAPI {
    static let defaultPageSize = 50
    static let maxPageSize = 500

    var runRoutes: [APIRoute] {
        [
            APIRoute(.get, "/api/v1/runs", .scope(.read)) { request, _ in
                let query = try QueryReader(
                    request,
                    allowed: ["jobId", "hostId", "agentType", "status", "since", "until", "cursor", "limit"])
                let filter = RunFilter(
                    jobId: try query.string("jobId"), hostId: try query.string("hostId"),
                    agentType: try query.string("agentType").map { try AgentType.parse($0, field: "agentType") },
                    status: try query.string("status").map { try RunStatus.parse($0, field: "status") },
                    queuedSince: try query.time("since"), queuedUntil: try query.time("until"))
                if let since = filter.queuedSince, let until = filter.queuedUntil, until <= since {
                    throw ValidationError(field: "until", message: "must be later than since")
                }
                let limit = try Self.limit(query.value("limit"), default: Self.defaultPageSize, max: Self.maxPageSize)
                let page = try await store.listRuns(filter, cursor: try query.string("cursor"), limit: limit)
                return try JSONResponse.make(
                    RunPageResponse(runs: page.runs.map { RunResource(run: $0) }, nextCursor: page.nextCursor))
            },
            // A long poll: answered when runs change (any run), after `waitSeconds`, or at once
            // for a token that is not the current one (``RunChangeFeed``).
            APIRoute(.get, "/api/v1/runs/changes", .scope(.read)) { request, _ in
                let query = try QueryReader(request, allowed: ["after", "tokenAgeMs", "waitSeconds"])
                let after = try query.string("after")
                if let after, after.utf8.count > 64 {
                    throw ValidationError(
                        field: "after", message: "is not a token this API gave (at most 64 characters)")
                }
                let wait = try Self.waitSeconds(query.value("waitSeconds"))
                let age = try query.value("tokenAgeMs").map { text -> Duration in
                    guard let milliseconds = Int(text), (0...86_400_000).contains(milliseconds) else {
                        throw ValidationError(
                            field: "tokenAgeMs", message: "must be a whole number of milliseconds up to 86400000")
                    }
                    return .milliseconds(milliseconds)
                }
                let answer = await runChanges.next(after: after, age: age, wait: .seconds(wait))
                return try JSONResponse.make(
                    JSONValue.object([
                        "token": .string(answer.token), "changed": .bool(answer.changed), "live": .bool(answer.live),
                    ]))
            },
            APIRoute(.get, "/api/v1/runs/:id", .scope(.read)) { _, context in
                let id = try context.parameters.require("id")
                guard let run = try await store.run(id: id) else { throw APIError.notFound("no run with id \(id)") }
                return JSONResponse.make(RunResource(run: run, waitingReason: try await waitingReason(run)))
            },
            APIRoute(.post, "/api/v1/runs/:id/rerun", .scope(.write)) { request, context in
                let id = try context.parameters.require("id")
                if let body = try await JSONResponse.body(of: request) {
                    try JSONObjectReader(body).rejectUnknownFields()
                }
                guard let earlier = try await store.run(id: id) else { throw APIError.notFound("no run with id \(id)") }
                let run: Run
                do {
                    run = try await store.triggerRun(
                        jobId: earlier.jobId, trigger: .rerun, scheduledAt: nil, rerunOf: earlier.id,
                        triggeredBy: context.principal?.requester, now: now,
                        traceParent: RunTracing.currentTraceParent())
                } catch let error as StoreError where error.code == .notFound {
                    throw APIError(
                        .gone, code: "job_deleted",
                        message:
                            "job \(earlier.jobId) (\(earlier.jobName)) of run \(id) was deleted; there is nothing to run again"
                    )
                }
                RunMetrics.created(.rerun)
                return JSONResponse.make(status: .created, RunResource(run: run))
            },
            APIRoute(.post, "/api/v1/runs/:id/cancel", .scope(.write)) { _, context in
                let at = now
                let outcome = try await store.requestCancel(
                    runId: try context.parameters.require("id"), by: context.principal?.requester, now: at)
                if case .canceled(let run) = outcome { RunMetrics.ended(run, appliedAt: at) }
                return JSONResponse.make(status: .accepted, RunResource(run: outcome.run))
            },
        ]
    }
}

extension ControlPlaneAPI {
    /// How long a poll of `/runs/changes` waits by default, and at most: under the 60 s idle
    /// timeout of common proxies and load balancers.
    static let defaultChangeWait = 25
    static let maxChangeWait = 55

    /// `waitSeconds`: 0 (answer at once) to ``maxChangeWait``.
    /// - Throws: ``ValidationError`` naming the field.
    static func waitSeconds(_ text: String?) throws -> Int {
        guard let text else { return defaultChangeWait }
        guard let seconds = Int(text), (0...maxChangeWait).contains(seconds) else {
            throw ValidationError(
                field: "waitSeconds", message: "must be a whole number between 0 and \(maxChangeWait)")
        }
        return seconds
    }
}

struct RunPageResponse: Encodable {
    var runs: [RunResource]
    var nextCursor: String?

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(runs, forKey: .runs)
        try container.encode(nextCursor, forKey: .nextCursor)
    }

    enum CodingKeys: String, CodingKey { case runs, nextCursor }
}

extension ControlPlaneAPI {
    /// Why a queued run has not started: its host is offline, a cancel waits for the host, or the
    /// host has it and has not started it yet. `nil` for runs that are not queued.
    func waitingReason(_ run: Run) async throws -> String? {
        guard run.status == .queued else { return nil }
        let deadline = ISO8601.format(run.queueDeadline)
        if let due = run.heldUntil {
            return
                "Attempt \(run.attempt) of \(run.maxAttempts), retrying run \(run.retryOf ?? "?"): waiting out its retry delay until \(ISO8601.format(due)), when it is dispatched to host \(run.hostId). Cancel it to end the retries."
        }
        if run.cancelRequestedAt != nil {
            return
                "Cancel requested; waiting for host \(run.hostId) to confirm. If it never does, the run is canceled without being launched once the host is offline past the grace period or at its queue deadline (\(deadline)), whichever comes first."
        }
        guard let host = try await store.host(id: run.hostId) else {
            return "Host \(run.hostId) is no longer registered; the run times out at its queue deadline (\(deadline))."
        }
        let seen = host.lastSeenAt.map { "last seen \(ISO8601.format($0))" } ?? "never seen"
        switch try await liveness(of: [host])[0] {
        case .online:
            break
        case .offline, .neverHeard:
            return
                "Host \(host.name) (\(host.id)) is offline (\(seen)). The run starts if the host returns before the queue deadline (\(deadline)); otherwise it times out without being launched."
        case .unknown(let reason):
            return
                "Host \(host.name) (\(host.id)) has not been heard from recently (\(seen)) and its state is unknown: \(reason). The run starts if the host is there before the queue deadline (\(deadline))."
        }
        if host.isAtCapacity, let limit = host.maxConcurrentRuns {
            return
                "Host \(host.name) (\(host.id)) is at capacity: \(host.runningRuns ?? limit) of \(limit) runs running (AGENTJOBS_MAX_CONCURRENT_RUNS). The run starts when one ends, in the order dispatched, if that is before its queue deadline (\(deadline))."
        }
        return
            "Dispatched to host \(host.name) (\(host.id)), which is online; waiting for its orchestrator to start the agent (queue deadline \(deadline))."
    }
}
