import AgentJobsControlPlane
import AgentJobsCore
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("API input handling")
struct APIValidationTests {
    struct BadRequest: Sendable, CustomTestStringConvertible {
        var label: String
        var method: HTTPRequest.Method
        var path: String
        var token: Token
        var body: String?
        var status: HTTPResponse.Status
        var code: String
        var field: String?

        enum Token: Sendable { case none, garbage, reader, writer, admin, host }
        var testDescription: String { label }
    }

    /// Every kind of bad input, with the status, error code and field the API must answer with.
    static let cases: [BadRequest] = [
        .init(
            label: "no token", method: .get, path: "/api/v1/jobs", token: .none, status: .unauthorized,
            code: "unauthenticated"),
        .init(
            label: "unknown token", method: .get, path: "/api/v1/runs", token: .garbage, status: .unauthorized,
            code: "unauthenticated"),
        .init(
            label: "read token writes", method: .post, path: "/api/v1/jobs", token: .reader, body: "JOB",
            status: .forbidden, code: "forbidden"),
        .init(
            label: "write token makes registration token", method: .post, path: "/api/v1/registration-tokens",
            token: .writer, status: .forbidden, code: "forbidden"),
        .init(
            label: "host credential lists jobs", method: .get, path: "/api/v1/jobs", token: .host, status: .forbidden,
            code: "forbidden"),
        .init(
            label: "user token syncs host agents", method: .put, path: "/api/v1/hosts/HOST/agents", token: .admin,
            body: #"{"managedAgents":[]}"#, status: .forbidden, code: "forbidden"),
        .init(
            label: "an empty limit", method: .get, path: "/api/v1/jobs/JOB/schedule?limit=", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "limit"),
        .init(
            label: "an empty page size", method: .get, path: "/api/v1/runs?limit=", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "limit"),
        .init(
            label: "an empty filter", method: .get, path: "/api/v1/runs?agentType=&status=failed", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "agentType"),
        .init(
            label: "a repeated filter", method: .get, path: "/api/v1/runs?status=failed&status=queued",
            token: .reader, status: .unprocessableContent, code: "validation_failed", field: "status"),
        .init(
            label: "an empty host filter", method: .get, path: "/api/v1/jobs?hostId=", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "hostId"),
        .init(
            label: "a method the path does not have", method: .put, path: "/api/v1/jobs", token: .writer,
            body: "JOB", status: .methodNotAllowed, code: "method_not_allowed"),
        .init(
            label: "a method the path does not have, without a token", method: .delete, path: "/api/v1/runs/JOB",
            token: .none, status: .methodNotAllowed, code: "method_not_allowed"),
        .init(
            label: "malformed JSON", method: .post, path: "/api/v1/jobs", token: .writer, body: "{nope",
            status: .badRequest, code: "malformed_json"),
        .init(
            label: "empty body", method: .post, path: "/api/v1/jobs", token: .writer, body: "", status: .badRequest,
            code: "malformed_json"),
        .init(
            label: "body not an object", method: .post, path: "/api/v1/jobs", token: .writer, body: "[]",
            status: .unprocessableContent, code: "validation_failed", field: "body"),
        .init(
            label: "a string with an unpaired surrogate escape", method: .post, path: "/api/v1/jobs", token: .writer,
            body: #"{"name":"\ud800x","hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f"}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "name"),
        .init(
            label: "a string that is not UTF-8, in a list", method: .post, path: "/api/v1/jobs", token: .writer,
            body:
                #"{"name":"n","hostId":"HOST","agentType":"lineage-plus","parameters":{"connectorTypes":["snowflake","<FF>"]}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "parameters.connectorTypes[1]"),
        .init(
            label: "a number out of range", method: .post, path: "/api/v1/jobs", token: .writer,
            body:
                #"{"name":"n","hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f"},"timeoutSeconds":1e999}"#,
            status: .unprocessableContent, code: "validation_failed", field: "timeoutSeconds"),
        .init(
            label: "missing name", method: .post, path: "/api/v1/jobs", token: .writer,
            body: #"{"hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f"}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "name"),
        .init(
            label: "unknown host", method: .post, path: "/api/v1/jobs", token: .writer,
            body: #"{"name":"n","hostId":"host_nope","agentType":"datahealth","parameters":{"fileName":"f"}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "hostId"),
        .init(
            label: "agent type not managed by host", method: .post, path: "/api/v1/jobs", token: .writer,
            body:
                #"{"name":"n","hostId":"HOST","agentType":"external-monitors","parameters":{"connectorTypes":["a"]}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "agentType"),
        .init(
            label: "persistent agent type", method: .post, path: "/api/v1/jobs", token: .writer,
            body: #"{"name":"n","hostId":"HOST","agentType":"cross-source"}"#, status: .unprocessableContent,
            code: "validation_failed", field: "agentType"),
        .init(
            label: "unknown agent type", method: .post, path: "/api/v1/jobs", token: .writer,
            body: #"{"name":"n","hostId":"HOST","agentType":"cobol"}"#, status: .unprocessableContent,
            code: "validation_failed", field: "agentType"),
        .init(
            label: "empty connector types", method: .post, path: "/api/v1/jobs", token: .writer,
            body: #"{"name":"n","hostId":"HOST","agentType":"lineage-plus","parameters":{"connectorTypes":[]}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "parameters.connectorTypes"),
        .init(
            label: "unknown parameter", method: .post, path: "/api/v1/jobs", token: .writer,
            body: #"{"name":"n","hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f","mode":"x"}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "parameters.mode"),
        .init(
            label: "unknown job field", method: .post, path: "/api/v1/jobs", token: .writer,
            body: #"{"name":"n","hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f"},"priority":1}"#,
            status: .unprocessableContent, code: "validation_failed", field: "priority"),
        .init(
            label: "bad cron", method: .post, path: "/api/v1/jobs", token: .writer,
            body:
                #"{"name":"n","hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f"},"schedule":{"cron":"* * *"}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "schedule.cron"),
        .init(
            label: "bad time zone", method: .post, path: "/api/v1/jobs", token: .writer,
            body:
                #"{"name":"n","hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f"},"schedule":{"cron":"@daily","timezone":"Moon/Crater"}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "schedule.timezone"),
        .init(
            label: "negative timeout", method: .post, path: "/api/v1/jobs", token: .writer,
            body:
                #"{"name":"n","hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f"},"timeoutSeconds":-5}"#,
            status: .unprocessableContent, code: "validation_failed", field: "timeoutSeconds"),
        .init(
            label: "retry without maxAttempts", method: .post, path: "/api/v1/jobs", token: .writer,
            body: #"{"name":"n","hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f"},"retry":{}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "retry.maxAttempts"),
        .init(
            label: "retry on canceled", method: .post, path: "/api/v1/jobs", token: .writer,
            body:
                #"{"name":"n","hostId":"HOST","agentType":"datahealth","parameters":{"fileName":"f"},"retry":{"maxAttempts":2,"on":["canceled"]}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "retry.on[0]"),
        .init(
            label: "patch retry with a shrinking backoff", method: .patch, path: "/api/v1/jobs/JOB", token: .writer,
            body: #"{"retry":{"maxAttempts":3,"backoffFactor":0.5}}"#, status: .unprocessableContent,
            code: "validation_failed", field: "retry.backoffFactor"),
        .init(
            label: "patch unknown field", method: .patch, path: "/api/v1/jobs/JOB", token: .writer,
            body: #"{"owner":"me"}"#, status: .unprocessableContent, code: "validation_failed", field: "owner"),
        .init(
            label: "patch to unmanaged agent type", method: .patch, path: "/api/v1/jobs/JOB", token: .writer,
            body: #"{"agentType":"external-monitors","parameters":{"connectorTypes":["a"]}}"#,
            status: .unprocessableContent, code: "validation_failed", field: "agentType"),
        .init(
            label: "patch missing job", method: .patch, path: "/api/v1/jobs/job_missing", token: .writer,
            body: #"{"name":"x"}"#, status: .notFound, code: "not_found"),
        .init(
            label: "get missing job", method: .get, path: "/api/v1/jobs/job_missing", token: .reader, status: .notFound,
            code: "not_found"),
        .init(
            label: "NUL in a query value", method: .get, path: "/api/v1/runs?jobId=job%00x", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "jobId"),
        .init(
            label: "NUL in a path id", method: .get, path: "/api/v1/runs/run%00x", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "id"),
        .init(
            label: "delete missing job", method: .delete, path: "/api/v1/jobs/job_missing", token: .writer,
            status: .notFound, code: "not_found"),
        .init(
            label: "trigger missing job", method: .post, path: "/api/v1/jobs/job_missing/runs", token: .writer,
            status: .notFound, code: "not_found"),
        .init(
            label: "trigger as schedule", method: .post, path: "/api/v1/jobs/JOB/runs", token: .writer,
            body: #"{"trigger":"schedule"}"#, status: .unprocessableContent, code: "validation_failed", field: "trigger"
        ),
        .init(
            label: "get missing run", method: .get, path: "/api/v1/runs/run_missing", token: .reader, status: .notFound,
            code: "not_found"),
        .init(
            label: "cancel missing run", method: .post, path: "/api/v1/runs/run_missing/cancel", token: .writer,
            status: .notFound, code: "not_found"),
        .init(
            label: "unknown run filter", method: .get, path: "/api/v1/runs?state=queued", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "state"),
        .init(
            label: "bad status filter", method: .get, path: "/api/v1/runs?status=done", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "status"),
        .init(
            label: "bad page size", method: .get, path: "/api/v1/runs?limit=0", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "limit"),
        .init(
            label: "bad cursor", method: .get, path: "/api/v1/runs?cursor=zzz", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "cursor"),
        .init(
            label: "a since that is not a time", method: .get, path: "/api/v1/runs?since=yesterday", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "since"),
        .init(
            label: "a time without a zone", method: .get, path: "/api/v1/runs?until=2026-12-01T00:00:00",
            token: .reader, status: .unprocessableContent, code: "validation_failed", field: "until"),
        .init(
            label: "until before since", method: .get,
            path: "/api/v1/runs?since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00%2B02:00", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "until"),
        .init(
            label: "bad job filter", method: .get, path: "/api/v1/jobs?agentType=x", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "agentType"),
        .init(
            label: "get missing host", method: .get, path: "/api/v1/hosts/host_missing", token: .reader,
            status: .notFound, code: "not_found"),
        .init(
            label: "register without token", method: .post, path: "/api/v1/hosts/register", token: .none,
            body: #"{"name":"h","managedAgents":["datahealth"]}"#, status: .unauthorized, code: "unauthenticated"),
        .init(
            label: "register with used token", method: .post, path: "/api/v1/hosts/register", token: .garbage,
            body: #"{"name":"h","managedAgents":["datahealth"]}"#, status: .unauthorized,
            code: "invalid_registration_token"),
        .init(
            label: "register with unknown agent", method: .post, path: "/api/v1/hosts/register", token: .garbage,
            body: #"{"name":"h","managedAgents":["cobol"]}"#, status: .unprocessableContent, code: "validation_failed",
            field: "managedAgents[0]"),
        .init(
            label: "token with bad scope", method: .post, path: "/api/v1/tokens", token: .admin,
            body: #"{"name":"x","scope":"root"}"#, status: .unprocessableContent, code: "validation_failed",
            field: "scope"),
        .init(
            label: "revoke missing token", method: .delete, path: "/api/v1/tokens/tok_missing", token: .admin,
            status: .notFound, code: "not_found"),
        .init(
            label: "write token lists registration tokens", method: .get, path: "/api/v1/registration-tokens",
            token: .writer, status: .forbidden, code: "forbidden"),
        .init(
            label: "write token revokes registration token", method: .post,
            path: "/api/v1/registration-tokens/reg_missing/revoke", token: .writer, status: .forbidden,
            code: "forbidden"),
        .init(
            label: "revoke missing registration token", method: .post,
            path: "/api/v1/registration-tokens/reg_missing/revoke", token: .admin, status: .notFound, code: "not_found"),
        .init(
            label: "unknown host status", method: .get, path: "/api/v1/hosts?status=lost", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "status"),
        .init(
            label: "run changes: wait too long", method: .get, path: "/api/v1/runs/changes?waitSeconds=56",
            token: .reader, status: .unprocessableContent, code: "validation_failed", field: "waitSeconds"),
        .init(
            label: "run changes: negative wait", method: .get, path: "/api/v1/runs/changes?waitSeconds=-1",
            token: .reader, status: .unprocessableContent, code: "validation_failed", field: "waitSeconds"),
        .init(
            label: "run changes: wait not a number", method: .get, path: "/api/v1/runs/changes?waitSeconds=soon",
            token: .reader, status: .unprocessableContent, code: "validation_failed", field: "waitSeconds"),
        .init(
            label: "run changes: negative token age", method: .get,
            path: "/api/v1/runs/changes?after=a-1&tokenAgeMs=-5", token: .reader, status: .unprocessableContent,
            code: "validation_failed", field: "tokenAgeMs"),
        .init(
            label: "run changes: empty token", method: .get, path: "/api/v1/runs/changes?after=", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "after"),
        .init(
            label: "run changes: token too long", method: .get,
            path: "/api/v1/runs/changes?after=" + String(repeating: "a", count: 65), token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "after"),
        .init(
            label: "run changes: unknown parameter", method: .get, path: "/api/v1/runs/changes?since=1",
            token: .reader, status: .unprocessableContent, code: "validation_failed", field: "since"),
        .init(
            label: "run changes: no token", method: .get, path: "/api/v1/runs/changes", token: .none,
            status: .unauthorized, code: "unauthenticated"),
        .init(
            label: "bad host page size", method: .get, path: "/api/v1/hosts?limit=501", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "limit"),
        .init(
            label: "a job cursor for hosts", method: .get, path: "/api/v1/hosts?cursor=c1", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "cursor"),
        .init(
            label: "unknown last status", method: .get, path: "/api/v1/jobs?lastStatus=done", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "lastStatus"),
        .init(
            label: "empty job search", method: .get, path: "/api/v1/jobs?q=", token: .reader,
            status: .unprocessableContent, code: "validation_failed", field: "q"),
        .init(
            label: "write token reads the audit log", method: .get, path: "/api/v1/audit", token: .writer,
            status: .forbidden, code: "forbidden"),
        .init(
            label: "unknown audit kind", method: .get, path: "/api/v1/audit?kind=jobs", token: .admin,
            status: .unprocessableContent, code: "validation_failed", field: "kind"),
        .init(
            label: "unknown audit action", method: .get, path: "/api/v1/audit?action=job.renamed", token: .admin,
            status: .unprocessableContent, code: "validation_failed", field: "action"),
        .init(
            label: "unknown audit filter", method: .get, path: "/api/v1/audit?actor=tok_x", token: .admin,
            status: .unprocessableContent, code: "validation_failed", field: "actor"),
        .init(
            label: "bad audit cursor", method: .get, path: "/api/v1/audit?cursor=zzz", token: .admin,
            status: .unprocessableContent, code: "validation_failed", field: "cursor"),
    ]

    @Test("bad input gets its documented status, code and field, and changes nothing", arguments: cases)
    func badInput(_ bad: BadRequest) async throws {
        let fixture = try await APIFixture.make()
        // A job with a finished run, for the paths that need one.
        let job = try await fixture.store.createJob(
            JobDefinition(
                name: "existing", hostId: fixture.hostId, agentType: .datahealth, parameters: .file(fileName: "f")),
            now: Date())
        let app = fixture.application()
        try await app.test(.router) { client in
            let before = try await fixture.snapshot()
            let token: String? =
                switch bad.token {
                case .none: nil
                case .garbage: "ajt_not_a_real_token"
                case .reader: fixture.reader
                case .writer: fixture.writer
                case .admin: fixture.admin
                case .host: fixture.hostCredential
                }
            let body = bad.body.map {
                $0 == "JOB" ? fixture.jobBody() : $0.replacingOccurrences(of: "HOST", with: fixture.hostId)
            }
            let path = bad.path.replacingOccurrences(of: "HOST", with: fixture.hostId).replacingOccurrences(
                of: "JOB", with: job.id)
            // `<FF>` in a body stands for the byte 0xFF, which no UTF-8 text holds.
            let bytes = body.map { text in
                text.components(separatedBy: "<FF>").map { Array($0.utf8) }.joined(separator: [0xFF]).map { $0 }
            }
            let (status, json) = try await client.call(bad.method, path, token: token, bytes: bytes)
            #expect(status == bad.status, "\(json)")
            #expect(json.errorCode == bad.code, "\(json)")
            let message = json["error"]?["message"]?.string ?? ""
            #expect(!message.isEmpty)
            #expect(!message.contains("DecodingError"), "Swift's diagnostics are not for users: \(message)")
            if let field = bad.field { #expect(json.errorField == field, "\(json)") }
            #expect(try await fixture.snapshot() == before)
        }
        await fixture.cleanup()
    }

    @Test("405 names the methods a path has in Allow; an unknown path stays 404")
    func methodNotAllowed() async throws {
        let fixture = try await APIFixture.make()
        let app = fixture.application()
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/v1/jobs", method: .patch) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET, POST")
            }
            try await client.execute(uri: "/api/v1/jobs/job_x", method: .post) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "DELETE, GET, PATCH")
            }
            try await client.execute(uri: "/healthz", method: try #require(HTTPRequest.Method("QUERY"))) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET")
            }
            try await client.execute(uri: "/api/v1/nowhere", method: .put) { response in
                #expect(response.status == .notFound)
            }
        }
        await fixture.cleanup()
    }

    @Test("hosts and jobs page through the API with their filters, a total and a cursor; no limit lists every one")
    func pagedListings() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            for index in 0..<3 {
                let (created, _) = try await client.call(
                    .post, "/api/v1/jobs", token: fixture.writer, body: fixture.jobBody(name: "job-\(index)"))
                #expect(created == .created)
            }
            let (status, first) = try await client.call(.get, "/api/v1/jobs?limit=2", token: fixture.reader)
            #expect(status == .ok)
            #expect(first["jobs"]?.array.compactMap { $0["name"]?.string } == ["job-2", "job-1"])
            #expect(first["total"] == .number(3))
            let cursor = try #require(first["nextCursor"]?.string)
            let (_, second) = try await client.call(
                .get, "/api/v1/jobs?limit=2&cursor=\(cursor)", token: fixture.reader)
            #expect(second["jobs"]?.array.compactMap { $0["name"]?.string } == ["job-0"])
            #expect(second["nextCursor"] == .null)
            let (_, all) = try await client.call(.get, "/api/v1/jobs", token: fixture.reader)
            #expect(all["jobs"]?.array.count == 3 && all["nextCursor"] == .null)
            let (_, never) = try await client.call(.get, "/api/v1/jobs?lastStatus=never&q=JOB-1", token: fixture.reader)
            #expect(never["jobs"]?.array.compactMap { $0["name"]?.string } == ["job-1"])

            let (_, hosts) = try await client.call(.get, "/api/v1/hosts?limit=1&namePrefix=db", token: fixture.reader)
            #expect(hosts["hosts"]?.array.first?["name"]?.string == "db-1")
            #expect(hosts["total"] == .number(1) && hosts["nextCursor"] == .null)
            // The status is judged per host, so a status filter has no total.
            let (_, offline) = try await client.call(.get, "/api/v1/hosts?status=offline", token: fixture.reader)
            #expect(offline["hosts"]?.array.count == 1 && offline["total"] == .null)
            let (_, online) = try await client.call(.get, "/api/v1/hosts?status=online&limit=5", token: fixture.reader)
            #expect(online["hosts"]?.array.isEmpty == true && online["nextCursor"] == .null)
        }
        await fixture.cleanup()
    }

    @Test("a queued run on a host at its concurrency limit says it waits for a slot")
    func waitingForCapacity() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            let (_, busy) = try await client.call(
                .post, "/api/v1/jobs", token: fixture.writer, body: fixture.jobBody(name: "busy"))
            let (_, waiting) = try await client.call(
                .post, "/api/v1/jobs", token: fixture.writer, body: fixture.jobBody(name: "waiting"))
            let (_, running) = try await client.call(
                .post, "/api/v1/jobs/\(busy["id"]?.string ?? "")/runs", token: fixture.writer)
            let (_, queued) = try await client.call(
                .post, "/api/v1/jobs/\(waiting["id"]?.string ?? "")/runs", token: fixture.writer)
            let runningId = try #require(running["id"]?.string)
            let queuedId = try #require(queued["id"]?.string)
            _ = try await fixture.store.recordHeartbeat(
                HostHeartbeat(
                    hostId: fixture.hostId, sentAt: Date(), version: "test", managedAgents: [.datahealth],
                    activeRuns: [
                        .init(runId: runningId, dispatchEpoch: 1, status: .running),
                        .init(runId: queuedId, dispatchEpoch: 1, status: .queued),
                    ], driver: "process", maxConcurrentRuns: 1),
                partition: 0, receivedAt: Date())
            let (_, host) = try await client.call(.get, "/api/v1/hosts/\(fixture.hostId)", token: fixture.reader)
            #expect(host["maxConcurrentRuns"] == .number(1) && host["runningRuns"] == .number(1))
            let (_, shown) = try await client.call(.get, "/api/v1/runs/\(queuedId)", token: fixture.reader)
            let reason = shown["waitingReason"]?.string ?? ""
            #expect(reason.contains("is at capacity: 1 of 1 runs running"), "\(reason)")
        }
        await fixture.cleanup()
    }

    @Test("the audit log names the token or host behind every change made through the API")
    func auditLog() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            let (_, job) = try await client.call(.post, "/api/v1/jobs", token: fixture.writer, body: fixture.jobBody())
            let jobId = try #require(job["id"]?.string)
            let (patched, _) = try await client.call(
                .patch, "/api/v1/jobs/\(jobId)", token: fixture.writer, body: #"{"timeoutSeconds":120}"#)
            #expect(patched == .ok)
            let (_, run) = try await client.call(.post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer)
            let runId = try #require(run["id"]?.string)
            _ = try await client.call(.post, "/api/v1/runs/\(runId)/cancel", token: fixture.admin)
            let (deleted, _) = try await client.call(.delete, "/api/v1/jobs/\(jobId)", token: fixture.writer)
            #expect(deleted == .noContent)
            _ = try await client.call(
                .put, "/api/v1/hosts/\(fixture.hostId)/agents", token: fixture.hostCredential,
                body: #"{"managedAgents":["datahealth"]}"#)

            let (status, page) = try await client.call(.get, "/api/v1/audit?targetId=\(jobId)", token: fixture.admin)
            #expect(status == .ok)
            let entries = page["entries"]?.array ?? []
            #expect(entries.compactMap { $0["action"]?.string } == ["job.deleted", "job.updated", "job.created"])
            #expect(
                entries.allSatisfy {
                    $0["actor"]?["kind"]?.string == "token" && $0["actor"]?["name"]?.string == "writer"
                })
            #expect(entries[1]["summary"]?.string == "version 2: timeoutSeconds")
            #expect(entries[1]["target"]?["name"]?.string == "nightly")
            #expect(page["nextCursor"] == .null)

            let (_, runs) = try await client.call(.get, "/api/v1/audit?kind=run&limit=1", token: fixture.admin)
            let newest = try #require(runs["entries"]?.array.first)
            #expect(newest["action"]?.string == "run.cancel_requested")
            #expect(newest["actor"]?["name"]?.string == "admin")
            let cursor = try #require(runs["nextCursor"]?.string)
            let (_, older) = try await client.call(
                .get, "/api/v1/audit?kind=run&limit=1&cursor=\(cursor)", token: fixture.admin)
            #expect(older["entries"]?.array.first?["action"]?.string == "run.triggered")

            let (_, hosts) = try await client.call(
                .get, "/api/v1/audit?action=host.agents_updated", token: fixture.admin)
            let synced = try #require(hosts["entries"]?.array.first)
            #expect(synced["actor"]?["kind"]?.string == "host")
            #expect(synced["actor"]?["id"]?.string == fixture.hostId)
            #expect(synced["summary"]?.string == "agents datahealth")
        }
        await fixture.cleanup()
    }

    @Test("the job lifecycle through the API: create, trigger, 409 with the active run, cancel, edit, delete")
    func jobLifecycle() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            let (created, job) = try await client.call(
                .post, "/api/v1/jobs", token: fixture.writer, body: fixture.jobBody())
            #expect(created == .created)
            let jobId = try #require(job["id"]?.string)
            #expect(job["version"] == .number(1))
            #expect(job["lastRun"] == .null)

            let (queued, run) = try await client.call(
                .post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer, body: #"{"trigger":"manual"}"#)
            #expect(queued == .created)
            let runId = try #require(run["id"]?.string)
            #expect(run["status"]?.string == "queued")
            #expect(run["trigger"]?.string == "manual")
            #expect(run["startedAt"] == .null)

            let (conflict, busy) = try await client.call(.post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer)
            #expect(conflict == .conflict)
            #expect(busy.errorCode == "active_run")
            #expect(busy["error"]?["activeRunId"]?.string == runId)
            let (deleteConflict, deleteBusy) = try await client.call(
                .delete, "/api/v1/jobs/\(jobId)", token: fixture.writer)
            #expect(deleteConflict == .conflict)
            #expect(deleteBusy["error"]?["activeRunId"]?.string == runId)

            let (accepted, canceled) = try await client.call(
                .post, "/api/v1/runs/\(runId)/cancel", token: fixture.writer)
            #expect(accepted == .accepted)
            #expect(canceled["status"]?.string == "canceled")
            let (finished, again) = try await client.call(.post, "/api/v1/runs/\(runId)/cancel", token: fixture.writer)
            #expect(finished == .conflict)
            #expect(again.errorCode == "run_finished")

            let (patched, edited) = try await client.call(
                .patch, "/api/v1/jobs/\(jobId)", token: fixture.writer, body: #"{"parameters":{"fileName":"new.yaml"}}"#
            )
            #expect(patched == .ok)
            #expect(edited["version"] == .number(2))
            #expect(edited["lastRun"]?["id"]?.string == runId)

            let (listed, page) = try await client.call(
                .get, "/api/v1/runs?jobId=\(jobId)&status=canceled&since=2000-01-01T00:00:00%2B01:00",
                token: fixture.reader)
            #expect(listed == .ok)
            if case .array(let runs)? = page["runs"] {
                #expect(runs.count == 1)
                #expect(runs.first?["parameters"]?["fileName"]?.string == "checks.yaml")
            } else {
                Issue.record("no runs array: \(page)")
            }

            let (deleted, _) = try await client.call(.delete, "/api/v1/jobs/\(jobId)", token: fixture.writer)
            #expect(deleted == .noContent)
            let (kept, keptRun) = try await client.call(.get, "/api/v1/runs/\(runId)", token: fixture.reader)
            #expect(kept == .ok)
            #expect(keptRun["jobName"]?.string == "nightly")
        }
        await fixture.cleanup()
    }

    @Test(
        "a run is run again with trigger rerun and a link to it; 409 while the job is active, 404 for no run, 410 once the job is deleted"
    )
    func rerun() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            let (_, job) = try await client.call(.post, "/api/v1/jobs", token: fixture.writer, body: fixture.jobBody())
            let jobId = try #require(job["id"]?.string)
            let (_, first) = try await client.call(.post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer)
            let firstId = try #require(first["id"]?.string)
            #expect(first["rerunOf"] == .null)
            // Who asked is recorded: the token's id and name.
            #expect(first["triggeredBy"]?["kind"]?.string == "token")
            #expect(first["triggeredBy"]?["name"]?.string == "writer")
            #expect(first["triggeredBy"]?["id"]?.string?.hasPrefix("tok_") == true)
            #expect(first["cancelRequestedBy"] == .null)

            // While the run is active the job cannot run again: a job runs one at a time.
            let (busy, refusal) = try await client.call(.post, "/api/v1/runs/\(firstId)/rerun", token: fixture.writer)
            #expect(busy == .conflict)
            #expect(refusal["error"]?["activeRunId"]?.string == firstId)
            let (_, canceled) = try await client.call(
                .post, "/api/v1/runs/\(firstId)/cancel", token: fixture.admin)
            #expect(canceled["cancelRequestedBy"]?["name"]?.string == "admin")
            #expect(canceled["triggeredBy"]?["name"]?.string == "writer")

            let (forbidden, _) = try await client.call(.post, "/api/v1/runs/\(firstId)/rerun", token: fixture.reader)
            #expect(forbidden == .forbidden)
            let (unknownField, invalid) = try await client.call(
                .post, "/api/v1/runs/\(firstId)/rerun", token: fixture.writer, body: #"{"trigger":"manual"}"#)
            #expect(unknownField == .unprocessableContent)
            #expect(invalid["error"]?["field"]?.string == "trigger")
            let (reserved, _) = try await client.call(
                .post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer, body: #"{"trigger":"rerun"}"#)
            #expect(reserved == .unprocessableContent, "the rerun trigger is only for POST /runs/{id}/rerun")

            let (created, again) = try await client.call(
                .post, "/api/v1/runs/\(firstId)/rerun", token: fixture.writer, body: "{}")
            #expect(created == .created)
            let againId = try #require(again["id"]?.string)
            #expect(againId != firstId)
            #expect(again["trigger"]?.string == "rerun")
            #expect(again["rerunOf"]?.string == firstId)
            #expect(again["status"]?.string == "queued")
            #expect(again["triggeredBy"]?["name"]?.string == "writer")
            let (_, shown) = try await client.call(.get, "/api/v1/runs/\(againId)", token: fixture.reader)
            #expect(shown["rerunOf"]?.string == firstId)
            #expect(shown["trigger"]?.string == "rerun")

            let (missing, notFound) = try await client.call(
                .post, "/api/v1/runs/run_missing/rerun", token: fixture.writer)
            #expect(missing == .notFound)
            #expect(notFound.errorCode == "not_found")

            _ = try await client.call(.post, "/api/v1/runs/\(againId)/cancel", token: fixture.writer)
            let (deleted, _) = try await client.call(.delete, "/api/v1/jobs/\(jobId)", token: fixture.writer)
            #expect(deleted == .noContent)
            let (gone, goneBody) = try await client.call(.post, "/api/v1/runs/\(firstId)/rerun", token: fixture.writer)
            #expect(gone == .gone)
            #expect(goneBody.errorCode == "job_deleted")
        }
        await fixture.cleanup()
    }

    @Test(
        "a job's retry policy through the API: its runs carry it, a held retry says why it waits, blocks Run now and is canceled at once"
    )
    func retries() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            let body =
                #"{"name":"flaky","hostId":"\#(fixture.hostId)","agentType":"datahealth","parameters":{"fileName":"f"},"retry":{"maxAttempts":3,"initialDelaySeconds":600}}"#
            let (created, job) = try await client.call(.post, "/api/v1/jobs", token: fixture.writer, body: body)
            #expect(created == .created)
            #expect(job["retry"]?["maxAttempts"]?.number == 3)
            #expect(job["retry"]?["backoffFactor"]?.number == 2)
            #expect(job["retry"]?["on"] == .array([.string("failed"), .string("timed_out")]))
            let jobId = try #require(job["id"]?.string)
            let (_, first) = try await client.call(.post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer)
            #expect(first["attempt"]?.number == 1)
            #expect(first["maxAttempts"]?.number == 3)
            #expect(first["retryOf"] == .null)
            #expect(first["heldUntil"] == .null)
            #expect(first["retryPolicy"]?["initialDelaySeconds"]?.number == 600)
            let firstId = try #require(first["id"]?.string)
            let run = try #require(try await fixture.store.run(id: firstId))
            let now = Date()
            _ = try await fixture.store.applyRunEvents(
                [
                    RunLifecycleEvent(
                        type: .failed, runId: run.id, jobId: jobId, hostId: run.hostId, dispatchEpoch: 1, sequence: 1,
                        at: now, exitCode: 2, errorSummary: "boom")
                ], now: now)

            let (_, page) = try await client.call(.get, "/api/v1/runs?jobId=\(jobId)", token: fixture.reader)
            let retry = try #require(page["runs"]?.array.first)
            let retryId = try #require(retry["id"]?.string)
            #expect(retry["attempt"]?.number == 2)
            #expect(retry["retryOf"]?.string == run.id)
            #expect(retry["status"]?.string == "queued")
            #expect(retry["heldUntil"]?.string != nil)
            #expect(retry["heldUntil"] == retry["queuedAt"])
            let (_, shown) = try await client.call(.get, "/api/v1/runs/\(retryId)", token: fixture.reader)
            #expect(shown["waitingReason"]?.string?.hasPrefix("Attempt 2 of 3, retrying run \(run.id)") == true)
            let (busy, refusal) = try await client.call(.post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer)
            #expect(busy == .conflict)
            #expect(refusal["error"]?["activeRunId"]?.string == retryId)
            let (canceledStatus, canceled) = try await client.call(
                .post, "/api/v1/runs/\(retryId)/cancel", token: fixture.writer)
            #expect(canceledStatus == .accepted)
            #expect(canceled["status"]?.string == "canceled")
            #expect(canceled["heldUntil"] == .null)

            let (_, edited) = try await client.call(
                .patch, "/api/v1/jobs/\(jobId)", token: fixture.writer, body: #"{"retry":{"maxAttempts":5}}"#)
            #expect(edited["retry"]?["maxAttempts"]?.number == 5)
            #expect(edited["retry"]?["initialDelaySeconds"]?.number == 600)
            let (_, off) = try await client.call(
                .patch, "/api/v1/jobs/\(jobId)", token: fixture.writer, body: #"{"retry":null}"#)
            #expect(off["retry"] == .null)
            let (_, plain) = try await client.call(.post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer)
            #expect(plain["maxAttempts"]?.number == 1)
            #expect(plain["retryPolicy"] == .null)
        }
        await fixture.cleanup()
    }

    @Test("a host registers once with a registration token and re-syncs its agents with its credential")
    func hostRegistration() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            let (created, registration) = try await client.call(
                .post, "/api/v1/registration-tokens", token: fixture.admin)
            #expect(created == .created)
            let token = try #require(registration["token"]?.string)
            let body = #"{"name":"edge-7","managedAgents":["lineage-plus","sds"]}"#
            let (registered, result) = try await client.call(.post, "/api/v1/hosts/register", token: token, body: body)
            #expect(registered == .created)
            let credential = try #require(result["credential"]?.string)
            let hostId = try #require(result["host"]?["id"]?.string)
            #expect(result["host"]?["status"]?.string == "offline")
            let (reused, _) = try await client.call(.post, "/api/v1/hosts/register", token: token, body: body)
            #expect(reused == .unauthorized)

            let (synced, host) = try await client.call(
                .put, "/api/v1/hosts/\(hostId)/agents", token: credential, body: #"{"managedAgents":["datahealth"]}"#)
            #expect(synced == .ok)
            #expect(host["managedAgents"] == .array([.string("datahealth")]))
            let (otherHost, _) = try await client.call(
                .put, "/api/v1/hosts/\(fixture.hostId)/agents", token: credential, body: #"{"managedAgents":[]}"#)
            #expect(otherHost == .forbidden)
            let (health, _) = try await client.call(.get, "/healthz", token: nil)
            #expect(health == .ok)
        }
        await fixture.cleanup()
    }

    @Test("an admin lists registration tokens with their state and revokes an unused one, which then registers no host")
    func registrationTokenListAndRevocation() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            let (created, registration) = try await client.call(
                .post, "/api/v1/registration-tokens", token: fixture.admin)
            #expect(created == .created)
            let id = try #require(registration["id"]?.string)
            let secret = try #require(registration["token"]?.string)
            #expect(
                try await client.call(.get, "/api/v1/registration-tokens", token: fixture.reader).status == .forbidden)
            #expect(
                try await client.call(.post, "/api/v1/registration-tokens/\(id)/revoke", token: fixture.writer).status
                    == .forbidden)

            let (listed, list) = try await client.call(.get, "/api/v1/registration-tokens", token: fixture.admin)
            #expect(listed == .ok)
            let tokens = try #require(list["registrationTokens"]?.array)
            let fresh = try #require(tokens.first { $0["id"]?.string == id })
            #expect(fresh["state"]?.string == "active")
            #expect(fresh["usedAt"] == .null && fresh["usedByHostId"] == .null && fresh["revokedAt"] == .null)
            #expect(fresh["createdAt"]?.string != nil && fresh["expiresAt"]?.string != nil)
            // The fixture's host registered with the other one.
            let spent = try #require(tokens.first { $0["id"]?.string != id })
            #expect(spent["state"]?.string == "used")
            #expect(spent["usedByHostId"]?.string == fixture.hostId)
            for token in tokens { #expect(token["token"] == nil && token["secretHash"] == nil, "\(token)") }

            let spentId = try #require(spent["id"]?.string)
            let (refused, conflict) = try await client.call(
                .post, "/api/v1/registration-tokens/\(spentId)/revoke", token: fixture.admin)
            #expect(refused == .conflict)
            #expect(conflict.errorCode == "conflict")
            #expect(
                conflict["error"]?["message"]?.string?.contains("POST /api/v1/hosts/\(fixture.hostId)/revoke") == true,
                "\(conflict)")

            let (revoked, token) = try await client.call(
                .post, "/api/v1/registration-tokens/\(id)/revoke", token: fixture.admin)
            #expect(revoked == .ok)
            #expect(token["id"]?.string == id)
            #expect(token["state"]?.string == "revoked")
            let revokedAt = try #require(token["revokedAt"]?.string)
            let (again, same) = try await client.call(
                .post, "/api/v1/registration-tokens/\(id)/revoke", token: fixture.admin)
            #expect(again == .ok)
            #expect(same["revokedAt"]?.string == revokedAt)

            let body = #"{"name":"edge-8","managedAgents":["datahealth"]}"#
            let (registered, refusal) = try await client.call(
                .post, "/api/v1/hosts/register", token: secret, body: body)
            #expect(registered == .unauthorized)
            #expect(refusal.errorCode == "invalid_registration_token")
            #expect(try await fixture.store.listHosts().count == 1)
            let after = try await client.call(.get, "/api/v1/registration-tokens", token: fixture.admin).json
            let listedAfter = after["registrationTokens"]?.array ?? []
            #expect(listedAfter.first(where: { $0["id"]?.string == id })?["state"]?.string == "revoked")
        }
        await fixture.cleanup()
    }

    @Test("an admin revokes a host's credential (refused at once) and rotates it (the new one works, the old one not)")
    func hostRevocationAndRotation() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            let agents = #"{"managedAgents":["datahealth"]}"#
            let path = "/api/v1/hosts/\(fixture.hostId)"
            #expect(
                try await client.call(.put, path + "/agents", token: fixture.hostCredential, body: agents).status == .ok
            )
            #expect(try await client.call(.post, path + "/revoke", token: fixture.writer).status == .forbidden)
            #expect(
                try await client.call(.post, "/api/v1/hosts/host_nope/revoke", token: fixture.admin).status == .notFound
            )
            let (revoked, host) = try await client.call(.post, path + "/revoke", token: fixture.admin)
            #expect(revoked == .ok)
            #expect(host["revokedAt"]?.string != nil)
            #expect(
                try await client.call(.put, path + "/agents", token: fixture.hostCredential, body: agents).status
                    == .unauthorized)
            // The event key the aggregator reads for it no longer verifies anything.
            let hash = try #require(try await fixture.store.hostCredentialHash(hostId: fixture.hostId))
            #expect(hash.hasPrefix(Host.revokedCredentialPrefix))

            let (rotated, result) = try await client.call(.post, path + "/credential", token: fixture.admin)
            #expect(rotated == .ok)
            let credential = try #require(result["credential"]?.string)
            #expect(result["host"]?["revokedAt"] == .null)
            #expect(try await client.call(.put, path + "/agents", token: credential, body: agents).status == .ok)
            #expect(
                try await client.call(.put, path + "/agents", token: fixture.hostCredential, body: agents).status
                    == .unauthorized)
        }
        await fixture.cleanup()
    }
}
