import AgentJobsCore
import ArgumentParser
import Foundation

struct HostsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hosts", abstract: "List and show registered hosts.", subcommands: [List.self, Show.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List hosts by name.")
        @OptionGroup var options: ClientOptions
        @Option(help: "Only hosts whose name starts with this.") var namePrefix: String?
        @Option(help: "Only hosts that manage this agent type.") var agentType: String?
        @Option(help: "Only hosts in this status: online, offline or unknown.") var status: String?
        @Option(help: "Page size (1-500).") var limit: Int = 50
        @Option(help: "Continue after this cursor (printed by the previous page).") var cursor: String?

        func run() async throws {
            let filters = [
                ("namePrefix", "--name-prefix", namePrefix), ("agentType", "--agent-type", agentType),
                ("status", "--status", status),
            ]
            try await Paging.list(
                "hosts", key: "hosts", options: options, path: "/api/v1/hosts", filters: filters, limit: limit,
                cursor: cursor,
                table: hostTable)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one host.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Host id or name.") var id: String

        func run() async throws {
            let client = try options.client()
            let json = try await client.send(.GET, "/api/v1/hosts/\(try await client.hostId(id).urlEncoded)")
            try Output.print(options.output, json: json, table: hostTable([json]))
        }
    }

    static func hostTable(_ hosts: [JSONValue]) -> Table {
        Table(
            headers: ["ID", "NAME", "STATUS", "LAST SEEN", "AGENTS", "VERSION"],
            rows: hosts.map { host in
                [
                    Output.text(host["id"]), Output.text(host["name"]), Output.text(host["status"]),
                    Output.shortDate(host["lastSeenAt"]),
                    (host["managedAgents"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ","),
                    Output.text(host["version"]),
                ]
            })
    }
}

/// Flags describing a job definition, shared by `jobs create` and `jobs edit`.
struct JobFields: ParsableArguments {
    @Option(help: "Job name.") var name: String?
    @Option(help: "Target host id or name.") var host: String?
    @Option(help: "Agent type: lineage-plus, external-monitors or datahealth.") var agentType: String?
    @Option(
        name: .customLong("connector-type"),
        help: "Connector type (repeat for several; lineage-plus, external-monitors).")
    var connectorTypes: [String] = []
    @Option(help: "Connection name (optional; lineage-plus, external-monitors).") var connectionName: String?
    @Option(help: "File name (datahealth).") var fileName: String?
    @Option(help: "Parameters as a JSON object, instead of the flags above.") var parameters: String?
    @Option(help: "Cron schedule, e.g. '30 2 * * *' or @daily.") var cron: String?
    @Option(help: "IANA time zone of the schedule (default UTC).") var timezone: String?
    @Option(help: "Missed occurrences: skip, or latest (one catch-up run within the window; default).")
    var missedPolicy: String?
    @Option(help: "Catch-up window in seconds for --missed-policy latest (default 3600).") var catchUpWindow: Int?
    @Option(help: "Spread starts: fire up to this many seconds after each occurrence (fixed per job).") var jitter: Int?
    @Option(help: "Run timeout in seconds.") var timeout: Int?
    @Option(help: "Queue timeout in seconds.") var queueTimeout: Int?
    @Option(help: "Retry a failed or timed-out run: the most runs of a chain, the first included (2-10).")
    var retryMaxAttempts: Int?
    @Option(help: "Seconds before the first retry (default 60).") var retryDelay: Int?
    @Option(help: "Each further retry delay is the previous one times this (default 2).") var retryBackoff: Double?
    @Option(help: "No retry delay is longer than this many seconds (default 3600).") var retryMaxDelay: Int?
    @Option(help: "Which ends are retried: failed, timed_out (repeat for both; default both).") var retryOn: [String] =
        []

    /// The request body fields these flags set.
    /// The request body these flags make, with `--host` resolved to an id through `client`.
    func body(_ client: APIClient) async throws -> [String: JSONValue] {
        var body: [String: JSONValue] = [:]
        if let name { body["name"] = .string(name) }
        if let host { body["hostId"] = .string(try await client.hostId(host)) }
        if let agentType { body["agentType"] = .string(agentType) }
        if let parameters {
            guard let json = try? JSONDecoder().decode(JSONValue.self, from: Data(parameters.utf8)) else {
                throw CLIError("--parameters is not valid JSON", status: ExitStatus.usage)
            }
            body["parameters"] = json
        } else if !connectorTypes.isEmpty || connectionName != nil || fileName != nil {
            var object: [String: JSONValue] = [:]
            if !connectorTypes.isEmpty { object["connectorTypes"] = .array(connectorTypes.map(JSONValue.string)) }
            if let connectionName { object["connectionName"] = .string(connectionName) }
            if let fileName { object["fileName"] = .string(fileName) }
            body["parameters"] = .object(object)
        }
        var schedule: [String: JSONValue] = [:]
        if let cron { schedule["cron"] = .string(cron) }
        if let timezone { schedule["timezone"] = .string(timezone) }
        if let missedPolicy { schedule["missedPolicy"] = .string(missedPolicy) }
        if let catchUpWindow { schedule["catchUpWindowSeconds"] = .number(Double(catchUpWindow)) }
        if let jitter { schedule["jitterSeconds"] = .number(Double(jitter)) }
        // In a patch, a schedule object changes only the fields it names.
        if !schedule.isEmpty { body["schedule"] = .object(schedule) }
        if let timeout { body["timeoutSeconds"] = .number(Double(timeout)) }
        if let queueTimeout { body["queueTimeoutSeconds"] = .number(Double(queueTimeout)) }
        var retry: [String: JSONValue] = [:]
        if let retryMaxAttempts { retry["maxAttempts"] = .number(Double(retryMaxAttempts)) }
        if let retryDelay { retry["initialDelaySeconds"] = .number(Double(retryDelay)) }
        if let retryBackoff { retry["backoffFactor"] = .number(retryBackoff) }
        if let retryMaxDelay { retry["maxDelaySeconds"] = .number(Double(retryMaxDelay)) }
        if !retryOn.isEmpty { retry["on"] = .array(retryOn.map(JSONValue.string)) }
        // As for the schedule: in a patch, a retry object changes only the fields it names.
        if !retry.isEmpty { body["retry"] = .object(retry) }
        return body
    }
}

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs", abstract: "Create, list, show, edit, delete and run jobs.",
        subcommands: [
            Create.self, List.self, Show.self, Edit.self, Delete.self, Run.self, Schedule.self, Pause.self, Resume.self,
        ])

    struct Schedule: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a job's schedule: next fire times and recent occurrences.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Job id or name.") var id: String

        func run() async throws {
            let client = try options.client()
            let json = try await client.send(.GET, "/api/v1/jobs/\(try await client.jobId(id).urlEncoded)/schedule")
            guard options.output == .table else {
                try Output.print(.json, json: json, table: Table(headers: [], rows: []))
                return
            }
            guard json["schedule"] != nil, json["schedule"] != .null else {
                print("job \(id) has no schedule")
                return
            }
            print("\(Output.text(json["description"]))\(json["paused"] == .bool(true) ? " — paused" : "")")
            print(
                "next: "
                    + (json["nextFireTimes"]?.arrayValue ?? []).map { Output.shortDate($0) }.joined(separator: ", "))
            print("")
            print(
                Table(
                    headers: ["SCHEDULED", "OUTCOME", "RUN", "REASON"],
                    rows: (json["occurrences"]?.arrayValue ?? []).map { occurrence in
                        [
                            Output.shortDate(occurrence["scheduledAt"]), Output.text(occurrence["outcome"]),
                            Output.text(occurrence["runId"] ?? occurrence["activeRunId"]),
                            Output.text(occurrence["reason"]),
                        ]
                    }
                ).rendered)
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pause a job's schedule (occurrences are recorded as missed).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Job id or name.") var id: String

        func run() async throws {
            try await setPaused(true, job: id, options: options)
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resume a job's schedule; occurrences passed while paused follow its missed policy.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Job id or name.") var id: String

        func run() async throws {
            try await setPaused(false, job: id, options: options)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a job.")
        @OptionGroup var options: ClientOptions
        @OptionGroup var fields: JobFields

        func run() async throws {
            let client = try options.client()
            let json = try await client.send(.POST, "/api/v1/jobs", body: .object(try await fields.body(client)))
            try Output.print(options.output, json: json, table: jobTable([json]))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List jobs, newest first.")
        @OptionGroup var options: ClientOptions
        @Option(help: "Only jobs on this host (id or name).") var host: String?
        @Option(help: "Only jobs of this agent type.") var agentType: String?
        @Option(help: "Only jobs whose name contains this (ignoring the case of ASCII letters).") var search: String?
        @Option(help: "Only jobs whose last run has this status, or never for jobs not run yet.") var lastStatus:
            String?
        @Option(help: "Page size (1-500).") var limit: Int = 50
        @Option(help: "Continue after this cursor (printed by the previous page).") var cursor: String?

        func run() async throws {
            var hostId: String?
            if let host { hostId = try await options.client().hostId(host) }
            // The hint repeats --host as given (a name stays a name).
            let filters = [
                ("hostId", "--host", hostId), ("agentType", "--agent-type", agentType), ("q", "--search", search),
                ("lastStatus", "--last-status", lastStatus),
            ]
            try await Paging.list(
                "jobs", key: "jobs", options: options, path: "/api/v1/jobs", filters: filters, limit: limit,
                cursor: cursor,
                table: jobTable, hint: ["--host": host])
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one job.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Job id or name.") var id: String

        func run() async throws {
            let client = try options.client()
            let json = try await client.send(.GET, "/api/v1/jobs/\(try await client.jobId(id).urlEncoded)")
            try Output.print(options.output, json: json, table: jobTable([json]))
        }
    }

    struct Edit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a job; the next run uses the new definition.")
        @OptionGroup var options: ClientOptions
        @OptionGroup var fields: JobFields
        @Flag(help: "Remove the job's schedule.") var noSchedule = false
        @Flag(help: "Turn retries off.") var noRetry = false
        @Argument(help: "Job id or name.") var id: String

        func run() async throws {
            let client = try options.client()
            var body = try await fields.body(client)
            if noSchedule { body["schedule"] = .null }
            if noRetry { body["retry"] = .null }
            guard !body.isEmpty else {
                throw CLIError("nothing to change: pass at least one field, e.g. --name", status: ExitStatus.usage)
            }
            let json = try await client.send(
                .PATCH, "/api/v1/jobs/\(try await client.jobId(id).urlEncoded)", body: .object(body))
            try Output.print(options.output, json: json, table: jobTable([json]))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a job (its runs are kept).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Job id or name.") var id: String

        func run() async throws {
            let client = try options.client()
            let jobId = try await client.jobId(id)
            _ = try await client.send(.DELETE, "/api/v1/jobs/\(jobId.urlEncoded)")
            try Output.result(
                options.output, json: JSONValue.object(["id": .string(jobId), "deleted": .bool(true)]),
                text: "deleted \(jobId)")
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a job now.",
            discussion:
                "With --wait, follows the run with a live status line (through its retries, when the job has a retry policy) and exits 0 only if it, or its last attempt, succeeded."
        )
        @OptionGroup var options: ClientOptions
        @Argument(help: "Job id or name.") var id: String
        @Flag(help: "Wait until the run ends; exit 0 only on succeeded.") var wait = false
        @Option(help: "With --wait: give up after this many seconds (exit 124).") var timeout: Int?

        func run() async throws {
            let client = try options.client()
            let json = try await client.send(
                .POST, "/api/v1/jobs/\(try await client.jobId(id).urlEncoded)/runs",
                body: .object(["trigger": .string("manual")]))
            try await RunsCommand.started(json, wait: wait, timeout: timeout, client: client, output: options.output)
        }
    }

    /// Pauses or resumes a job's schedule: a PATCH that names only `schedule.paused`.
    static func setPaused(_ paused: Bool, job reference: String, options: ClientOptions) async throws {
        let client = try options.client()
        let id = try await client.jobId(reference)
        let job = try await client.send(
            .PATCH, "/api/v1/jobs/\(id.urlEncoded)", body: .object(["schedule": .object(["paused": .bool(paused)])]))
        try Output.result(options.output, json: job, text: "\(paused ? "paused" : "resumed") the schedule of \(id)")
    }

    static func jobTable(_ jobs: [JSONValue]) -> Table {
        Table(
            headers: [
                "ID", "NAME", "HOST", "AGENT", "PARAMETERS", "SCHEDULE", "NEXT FIRE", "ATTEMPTS", "VERSION", "LAST RUN",
            ],
            rows: jobs.map { job in
                let schedule = job["schedule"].flatMap { schedule -> String? in
                    guard let cron = schedule["cron"]?.stringValue else { return nil }
                    return "\(cron) (\(schedule["timezone"]?.stringValue ?? "UTC"))"
                }
                return [
                    Output.text(job["id"]), Output.text(job["name"]), Output.text(job["hostId"]),
                    Output.text(job["agentType"]),
                    Output.parameters(job["parameters"]),
                    (schedule ?? "-") + (job["schedule"]?["paused"] == .bool(true) ? " paused" : ""),
                    Output.shortDate(job["nextFireAt"]), job["retry"]?["maxAttempts"]?.stringValue ?? "1",
                    Output.text(job["version"]), Output.text(job["lastRun"]?["status"]),
                ]
            })
    }
}

struct RunsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs", abstract: "List, show, watch, cancel and rerun runs.",
        subcommands: [List.self, Show.self, Wait.self, Watch.self, Cancel.self, Rerun.self])

    struct Rerun: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a run's job again (its current definition); the new run names the one it repeats.",
            discussion:
                "Exit statuses: 4 while the job has an active run, 3 when the run or its job no longer exists; with --wait, 7 when the new run does not succeed and 124 after --timeout."
        )
        @OptionGroup var options: ClientOptions
        @Argument(help: "Run id.") var id: String
        @Flag(help: "Wait until the new run ends; exit 0 only on succeeded.") var wait = false
        @Option(help: "With --wait: give up after this many seconds (exit 124).") var timeout: Int?

        func run() async throws {
            let client = try options.client()
            let json = try await client.send(.POST, "/api/v1/runs/\(id.urlEncoded)/rerun")
            try await RunsCommand.started(json, wait: wait, timeout: timeout, client: client, output: options.output)
        }
    }

    struct Wait: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait until a run ends; exit 0 only if it succeeded.",
            discussion:
                "A run its job's retry policy retries is followed through its retries, to the last attempt. Exit statuses: 7 when the run (its last attempt) ended but did not succeed, 124 after --timeout."
        )
        @OptionGroup var options: ClientOptions
        @Argument(help: "Run id.") var id: String
        @Option(help: "Give up after this many seconds (exit 124); the run goes on.") var timeout: Int?

        func run() async throws {
            let final = try await RunsCommand.follow(
                id, client: try options.client(), timeout: timeout, output: options.output)
            try RunsCommand.finish(final, output: options.output)
        }
    }

    /// A run just created (`jobs run`, `runs rerun`): printed, or with `wait` followed until it
    /// ends (see ``finish(_:output:)``).
    static func started(
        _ run: JSONValue, wait: Bool, timeout: Int?, client: APIClient, output: OutputFormat
    ) async throws {
        guard wait, let runId = run["id"]?.stringValue else {
            try Output.print(output, json: run, table: runTable([run]))
            return
        }
        try finish(try await follow(runId, client: client, timeout: timeout, output: output), output: output)
    }

    /// What `--wait` does once the run ended: prints it as JSON when asked, and fails with
    /// ``ExitStatus/runNotSucceeded`` (after its error summary) unless it succeeded.
    static func finish(_ final: JSONValue, output: OutputFormat) throws {
        if output == .json { try Output.print(.json, json: final, table: RunsCommand.runTable([final])) }
        guard final["status"]?.stringValue == "succeeded" else {
            if let summary = final["errorSummary"]?.stringValue {
                FileHandle.standardError.write(Data((summary + "\n").utf8))
            }
            throw ExitCode(ExitStatus.runNotSucceeded)
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print runs' status changes as they happen (Ctrl-C to stop).",
            discussion:
                "Waits on the API's run change feed (a long poll of GET /api/v1/runs/changes) and reads the latest runs at each change; prints one line per new run and per status change (with --output json, the run as one JSON object per line). Reads once a second while the feed is not live."
        )
        @OptionGroup var options: ClientOptions
        @Option(help: "Only runs of this job (id or name).") var job: String?
        @Option(help: "Only runs on this host (id or name).") var host: String?

        func run() async throws {
            let client = try options.client()
            var query = ["limit=100"]
            if let job { query.append("jobId=\(try await client.jobId(job).urlEncoded)") }
            if let host { query.append("hostId=\(try await client.hostId(host).urlEncoded)") }
            var seen: [String: String] = [:]
            var first = true
            var feed = ChangeFeedPosition()
            // The feed's token comes before the read: a change while reading is answered at once.
            await feed.next(client)
            while true {
                let page = try await client.send(.GET, "/api/v1/runs?" + query.joined(separator: "&"))
                for run in (page["runs"]?.arrayValue ?? []).reversed() {
                    guard let id = run["id"]?.stringValue else { continue }
                    let status = RunsCommand.status(run)
                    if seen[id] != status {
                        if !first || status == "queued" || status == "running" || status == "canceling…" {
                            if options.output == .json {
                                print(try Output.encoded(run, pretty: false))
                            } else {
                                print(
                                    "\(ISO8601.format(Date()))  \(id)  \(Output.text(run["jobName"]))  \(status)"
                                        + (run["exitCode"]?.stringValue.map { "  exit \($0)" } ?? ""))
                            }
                        }
                        seen[id] = status
                    }
                }
                first = false
                fflush(nil)
                await feed.next(client)
            }
        }
    }

    /// Where a client is in the API's run change feed (`GET /api/v1/runs/changes`).
    struct ChangeFeedPosition {
        /// How long one poll waits: the API's default, under the client's 30 s timeout.
        static let waitSeconds = 25
        private var token: String?
        private var receivedAt = ContinuousClock.now

        /// Returns when runs changed since the last token (at once the first time), after the
        /// feed's wait without a change, or after a second when the feed is not live or fails.
        mutating func next(_ client: APIClient) async {
            var path = "/api/v1/runs/changes?waitSeconds=\(Self.waitSeconds)"
            if let token {
                // Rounded up: an age told short could make a replica take another's token as current.
                let age = Int((ContinuousClock.now - receivedAt) / .milliseconds(1)) + 1
                path += "&after=\(token.urlEncoded)&tokenAgeMs=\(min(age, 86_400_000))"
            }
            let answer = try? await client.send(.GET, path)
            guard let answer, let next = answer["token"]?.stringValue else {
                try? await Task.sleep(for: .seconds(1))
                return
            }
            token = next
            receivedAt = .now
            if answer["live"] != .bool(true) { try? await Task.sleep(for: .seconds(1)) }
        }
    }

    /// Polls a run until it ends, keeping a live status line on stderr when it is a terminal, else
    /// writing a line per change of status (no control characters in a log or a pipe).
    /// - Returns: The final run.
    /// - Throws: `ExitCode(ExitStatus.waitTimedOut)` after `timeout` seconds, having printed the run
    ///   as it last was in JSON when `output` is JSON.
    static func follow(_ first: String, client: APIClient, timeout: Int?, output: OutputFormat) async throws
        -> JSONValue
    {
        let started = ContinuousClock.now
        let terminal = isatty(STDERR_FILENO) == 1
        var last = ""
        var runId = first
        while true {
            let run = try await client.send(.GET, "/api/v1/runs/\(runId.urlEncoded)")
            let state = status(run)
            let elapsed = Int((ContinuousClock.now - started).components.seconds)
            let line = terminal ? "\(runId)  \(state)  \(elapsed)s" : "\(runId)  \(state)"
            if line != last {
                FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
                last = line
            }
            if let status = run["status"]?.stringValue, !["queued", "running"].contains(status) {
                if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
                if let code = run["exitCode"]?.stringValue {
                    FileHandle.standardError.write(Data("exit code \(code)\n".utf8))
                }
                // A retry is written with the end it retries: when there is one, it is there now.
                guard let retry = try await retry(of: run, client: client) else { return run }
                let due = retry["heldUntil"]?.stringValue.map { ", due \($0)" } ?? ""
                FileHandle.standardError.write(
                    Data(
                        "\(runId) \(status); retried as \(Output.text(retry["id"])) (attempt \(Output.text(retry["attempt"])) of \(Output.text(retry["maxAttempts"]))\(due))\n"
                            .utf8))
                runId = retry["id"]?.stringValue ?? runId
                last = ""
                continue
            }
            if let timeout, elapsed >= timeout {
                FileHandle.standardError.write(
                    Data(((terminal ? "\n" : "") + "gave up waiting after \(timeout) s; the run goes on\n").utf8))
                if output == .json { try Output.print(.json, json: run, table: runTable([run])) }
                throw ExitCode(ExitStatus.waitTimedOut)
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// The next attempt of an ended run, when its retry policy wrote one.
    static func retry(of run: JSONValue, client: APIClient) async throws -> JSONValue? {
        guard case .number(let attempt) = run["attempt"], case .number(let most) = run["maxAttempts"],
            attempt < most, let id = run["id"]?.stringValue, let jobId = run["jobId"]?.stringValue
        else { return nil }
        let page = try await client.send(.GET, "/api/v1/runs?jobId=\(jobId.urlEncoded)&limit=20")
        return page["runs"]?.arrayValue.first { $0["retryOf"]?.stringValue == id }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List runs, newest first.")
        @OptionGroup var options: ClientOptions
        @Option(help: "Only runs of this job (id or name).") var job: String?
        @Option(help: "Only runs on this host (id or name).") var host: String?
        @Option(help: "Only runs of this agent type.") var agentType: String?
        @Option(help: "Only runs in this status.") var status: String?
        @Option(help: "Only runs queued at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).") var since:
            String?
        @Option(help: "Only runs queued before this time (RFC 3339).") var until: String?
        @Option(help: "Page size (1-500).") var limit: Int = 50
        @Option(help: "Continue after this cursor (printed by the previous page).") var cursor: String?

        func run() async throws {
            let client = try options.client()
            var jobId: String?
            var hostId: String?
            if let job { jobId = try await client.jobId(job) }
            if let host { hostId = try await client.hostId(host) }
            // The hint repeats --job and --host as given (a name stays a name).
            let filters = [
                ("jobId", "--job", jobId), ("hostId", "--host", hostId), ("agentType", "--agent-type", agentType),
                ("status", "--status", status), ("since", "--since", since), ("until", "--until", until),
            ]
            try await Paging.list(
                "runs", key: "runs", options: options, path: "/api/v1/runs", filters: filters, limit: limit,
                cursor: cursor, table: runTable, hint: ["--job": job, "--host": host])
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one run, with its error summary.")

        /// `triggeredBy` or `cancelRequestedBy` in words: "token writer (tok_…)", "schedule".
        static func requester(_ value: JSONValue?) -> String? {
            guard let kind = value?["kind"]?.stringValue else { return nil }
            guard let id = value?["id"]?.stringValue else { return kind }
            return "\(kind) \(value?["name"]?.stringValue ?? id) (\(id))"
        }
        @OptionGroup var options: ClientOptions
        @Argument(help: "Run id.") var id: String

        func run() async throws {
            let run = try await options.client().send(.GET, "/api/v1/runs/\(id.urlEncoded)")
            if options.output == .json {
                try Output.print(.json, json: run, table: runTable([run]))
                return
            }
            let fields: [(String, String)] = [
                ("Run", Output.text(run["id"])),
                (
                    "Job",
                    "\(Output.text(run["jobName"])) (\(Output.text(run["jobId"])), version \(Output.text(run["jobVersion"])))"
                ),
                ("Host", Output.text(run["hostId"])),
                ("Agent", "\(Output.text(run["agentType"])) \(Output.parameters(run["parameters"]))"),
                ("Status", status(run)),
                (
                    "Trigger",
                    Output.text(run["trigger"]) + (run["rerunOf"]?.stringValue.map { " of \($0)" } ?? "")
                        + (Self.requester(run["triggeredBy"]).map { " by \($0)" } ?? "")
                ),
                ("Queued", Output.shortDate(run["queuedAt"])),
                ("Started", Output.shortDate(run["startedAt"])),
                ("Finished", Output.shortDate(run["finishedAt"])),
                ("Duration", Output.duration(run["durationMs"])),
                ("Exit code", Output.text(run["exitCode"])),
            ]
            var lines = fields
            if let waiting = run["waitingReason"]?.stringValue { lines.insert(("Waiting", waiting), at: 5) }
            if let canceler = Self.requester(run["cancelRequestedBy"]) { lines.append(("Cancel by", canceler)) }
            if case .number(let attempts) = run["maxAttempts"], attempts > 1 {
                let of = run["retryOf"]?.stringValue.map { ", retry of \($0)" } ?? ""
                lines.insert(
                    ("Attempt", "\(Output.text(run["attempt"])) of \(Output.text(run["maxAttempts"]))\(of)"), at: 6)
            }
            for (label, value) in lines {
                print(label.padding(toLength: 10, withPad: " ", startingAt: 0) + " " + value)
            }
            if let summary = run["errorSummary"]?.stringValue {
                print("\nError summary:\n" + summary)
            }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a queued or running run.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Run id.") var id: String

        func run() async throws {
            let run = try await options.client().send(.POST, "/api/v1/runs/\(id.urlEncoded)/cancel")
            try Output.result(
                options.output, json: run,
                text: run["status"]?.stringValue == "canceled"
                    ? "canceled \(id) (it had not reached its host)"
                    : "cancel requested for \(id); it ends as canceled once its host confirms the agent stopped")
        }
    }

    static func status(_ run: JSONValue) -> String {
        let status = Output.text(run["status"])
        if run["cancelRequestedAt"]?.stringValue != nil, status == "queued" || status == "running" {
            return "canceling…"
        }
        return status
    }

    /// The trigger, with the attempt of a retry ("schedule, attempt 2/3").
    static func trigger(_ run: JSONValue) -> String {
        guard case .number(let attempt) = run["attempt"], attempt > 1 else { return Output.text(run["trigger"]) }
        return
            "\(Output.text(run["trigger"])), attempt \(Output.text(run["attempt"]))/\(Output.text(run["maxAttempts"]))"
    }

    static func runTable(_ runs: [JSONValue]) -> Table {
        Table(
            headers: ["ID", "JOB", "HOST", "AGENT", "STATUS", "TRIGGER", "QUEUED", "DURATION", "EXIT"],
            rows: runs.map { run in
                [
                    Output.text(run["id"]), Output.text(run["jobName"]), Output.text(run["hostId"]),
                    Output.text(run["agentType"]), status(run), trigger(run),
                    Output.shortDate(run["queuedAt"]),
                    Output.duration(run["durationMs"]), Output.text(run["exitCode"]),
                ]
            })
    }
}
