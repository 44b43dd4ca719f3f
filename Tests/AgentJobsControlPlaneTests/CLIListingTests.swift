import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

/// The CLI against `agentjobs dev`, as a script would call it (output to a pipe).
extension CrashRecoveryTests {
    /// Runs the `agentjobs` CLI with `arguments` against `port`, returning its exit status and its
    /// standard output and error together.
    func cli(_ arguments: [String], port: Int, token: String) async throws -> (Int32, String) {
        var environment = ProcessInfo.processInfo.environment
        environment["AGENTJOBS_URL"] = "http://127.0.0.1:\(port)"
        environment["AGENTJOBS_TOKEN"] = token
        return try await cli(arguments, environment: environment)
    }

    /// Runs the `agentjobs` CLI with `arguments` and exactly `environment`.
    func cli(_ arguments: [String], environment: [String: String]) async throws -> (Int32, String) {
        let process = SpawnedProcess()
        process.executableURL = AgentJobsProcess.binary
        process.arguments = arguments
        process.environment = environment
        let (status, output) = try await process.runToEnd()
        return (status, String(decoding: output, as: UTF8.self))
    }

    @Test("runs list's paging hint keeps the filters and works as printed; --wait into a pipe writes plain lines")
    func pagingHintAndPlainProgress() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let dev = try await AgentJobsProcess(dataDir: dataDir)
        let token = try String(contentsOf: dataDir.appendingPathComponent("admin-token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let (_, hosts) = try await cli(["hosts", "list", "-o", "json"], port: dev.port, token: token)
        let hostId = try #require(
            try JSONDecoder().decode(JSONValue.self, from: Data(hosts.utf8))["hosts"]?.array.first?["id"]?.string)
        var jobIds: [String] = []
        for name in ["paged", "other"] {
            let (status, created) = try await cli(
                [
                    "jobs", "create", "--name", name, "--host", hostId, "--agent-type", "datahealth", "--file-name",
                    "ok.csv",
                    "-o", "json",
                ], port: dev.port, token: token)
            #expect(status == 0, "\(created)")
            jobIds.append(
                try #require(try JSONDecoder().decode(JSONValue.self, from: Data(created.utf8))["id"]?.string))
        }
        var runIds: [String] = []
        for jobId in [jobIds[0], jobIds[1], jobIds[0]] {
            let (status, output) = try await cli(["jobs", "run", jobId, "--wait"], port: dev.port, token: token)
            #expect(status == 0, "\(output)")
            #expect(!output.contains("\u{1B}") && !output.contains("\r"), "control characters in a pipe: \(output)")
            #expect(output.contains("succeeded"), "\(output)")
            runIds.append(try #require(output.split(separator: " ").first.map(String.init)))
        }

        let (listed, page) = try await cli(
            ["runs", "list", "--job", jobIds[0], "--since", "2000-01-01T00:00:00+01:00", "--limit", "1"],
            port: dev.port, token: token)
        #expect(listed == 0, "\(page)")
        #expect(page.contains(runIds[2]) && !page.contains(runIds[0]), "newest first, one per page: \(page)")
        let hint = try #require(page.split(separator: "\n").first { $0.hasPrefix("more: agentjobs runs list ") })
        #expect(hint.contains("--job=\(jobIds[0])") && hint.contains("--limit=1"), "\(hint)")
        #expect(hint.contains("--since=2000-01-01T00:00:00+01:00"), "\(hint)")
        let (_, future) = try await cli(
            ["runs", "list", "--since", "2100-01-01T00:00:00Z", "-o", "json"], port: dev.port, token: token)
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(future.utf8))["runs"] == .array([]), "\(future)")
        let (next, secondPage) = try await cli(
            hint.dropFirst("more: agentjobs ".count).split(separator: " ").map(String.init), port: dev.port,
            token: token)
        #expect(next == 0, "\(secondPage)")
        #expect(secondPage.contains(runIds[0]), "the second page is the job's older run: \(secondPage)")
        #expect(!secondPage.contains(runIds[1]), "the other job's run is not listed: \(secondPage)")

        // Run again: a new run of the same job that names the one it repeats.
        let (rerunStatus, rerun) = try await cli(["runs", "rerun", runIds[2], "--wait"], port: dev.port, token: token)
        #expect(rerunStatus == 0, "\(rerun)")
        let rerunId = try #require(rerun.split(separator: " ").first.map(String.init))
        #expect(rerunId != runIds[2])
        let (_, shown) = try await cli(["runs", "show", rerunId], port: dev.port, token: token)
        #expect(shown.contains("rerun of \(runIds[2]) by token "), "\(shown)")
        #expect(shown.contains(jobIds[0]), "\(shown)")

        // Jobs page too, the hint keeping a host given by name as a name.
        let (jobsListed, jobsPage) = try await cli(
            ["jobs", "list", "--host", "local", "--limit", "1"], port: dev.port, token: token)
        #expect(jobsListed == 0, "\(jobsPage)")
        #expect(jobsPage.contains("other") && !jobsPage.contains("paged"), "newest first, one per page: \(jobsPage)")
        let jobsHint = try #require(
            jobsPage.split(separator: "\n").first { $0.hasPrefix("more: agentjobs jobs list ") })
        #expect(jobsHint.contains("--host=local") && jobsHint.contains("--limit=1"), "\(jobsHint)")
        let (_, olderJobs) = try await cli(
            jobsHint.dropFirst("more: agentjobs ".count).split(separator: " ").map(String.init), port: dev.port,
            token: token)
        #expect(olderJobs.contains("paged") && !olderJobs.contains("more:"), "\(olderJobs)")
        let (_, searched) = try await cli(
            ["jobs", "list", "--search", "PAG", "-o", "json"], port: dev.port, token: token)
        #expect(
            try JSONDecoder().decode(JSONValue.self, from: Data(searched.utf8))["total"] == .number(1), "\(searched)")
        let (_, hostsJSON) = try await cli(
            ["hosts", "list", "--status", "online", "--name-prefix", "loc", "-o", "json"], port: dev.port, token: token)
        #expect(
            try JSONDecoder().decode(JSONValue.self, from: Data(hostsJSON.utf8))["hosts"]?.array.first?["name"]?.string
                == "local", "\(hostsJSON)")

        // The audit log: the runs the CLI triggered, by the dev admin token, paged with the filter kept.
        let (audited, log) = try await cli(
            ["audit", "list", "--kind", "run", "--limit", "2"], port: dev.port, token: token)
        #expect(audited == 0, "\(log)")
        #expect(log.contains("run.rerun") && log.contains(rerunId), "\(log)")
        #expect(log.contains("token tok_") && log.contains("(dev admin)"), "the actor is not named: \(log)")
        let auditHint = try #require(log.split(separator: "\n").first { $0.hasPrefix("more: agentjobs audit list ") })
        #expect(auditHint.contains("--kind=run") && auditHint.contains("--limit=2"), "\(auditHint)")
        let (older, olderLog) = try await cli(
            auditHint.dropFirst("more: agentjobs ".count).split(separator: " ").map(String.init), port: dev.port,
            token: token)
        #expect(older == 0, "\(olderLog)")
        #expect(olderLog.contains("run.triggered") && !olderLog.contains("job.created"), "\(olderLog)")
        let (refused, refusal) = try await cli(["audit", "list", "--kind", "jobs"], port: dev.port, token: token)
        #expect(refused != 0 && refusal.contains("kind"), "\(refusal)")
        await dev.stop()
    }
}

extension CrashRecoveryTests {
    @Test(
        "every failure has its documented exit status; names work where ids do; --version is the version hosts report"
    )
    func exitStatuses() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-exit-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let dev = try await AgentJobsProcess(dataDir: dataDir)
        let token = try String(contentsOf: dataDir.appendingPathComponent("admin-token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let adminToken = token
        func status(_ arguments: [String], token: String? = nil, port: Int? = nil) async throws -> Int32 {
            try await cli(arguments, port: port ?? dev.port, token: token ?? adminToken).0
        }
        let (_, hosts) = try await cli(["hosts", "list", "-o", "json"], port: dev.port, token: token)
        let host = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(hosts.utf8))["hosts"]?.array.first)
        #expect(host["name"]?.string == "local")
        let (versionStatus, version) = try await cli(["--version"], port: dev.port, token: token)
        #expect(versionStatus == 0)
        #expect(version.trimmingCharacters(in: .whitespacesAndNewlines) == host["version"]?.string)

        func job(_ name: String, _ parameters: [String]) async throws -> String {
            let (code, created) = try await cli(
                ["jobs", "create", "--name", name, "--host", "local", "-o", "json"] + parameters, port: dev.port,
                token: token)
            #expect(code == 0, "\(created)")
            return try #require(try JSONDecoder().decode(JSONValue.self, from: Data(created.utf8))["id"]?.string)
        }
        _ = try await job("failing", ["--agent-type", "lineage-plus", "--connector-type", "fail-postgres"])
        let slow = try await job("slow", ["--agent-type", "datahealth", "--file-name", "sleep-60"])

        #expect(try await status(["runs", "show"]) == 2, "usage: a missing argument")
        #expect(try await status(["runs", "list", "--limit", "many"]) == 2, "usage: a bad value")
        #expect(try await status(["runs", "show", "run_nope"]) == 3, "not found")
        #expect(try await status(["runs", "list"], token: "ajt_wrong") == 5, "unauthenticated")
        #expect(try await status(["runs", "list"], port: 1) == 6, "unreachable")
        #expect(try await status(["jobs", "run", "failing", "--wait"]) == 7, "--wait: the run failed (named)")
        #expect(try await status(["runs", "list", "--job", "failing", "--host", "local"]) == 0)
        #expect(try await status(["jobs", "show", "no-such-job"]) == 3, "not found by name")
        #expect(try await status(["jobs", "show", " "]) == 2, "an empty name is a usage error")
        #expect(
            try await status([
                "host", "register", "--control-plane", "http://127.0.0.1:\(dev.port)", "--name", "h", "--agents",
                "datahealth", "--data-dir", dataDir.appendingPathComponent("h").path,
            ]) == 2, "host register without a registration token (no flag, no file, no AGENTJOBS_REGISTRATION_TOKEN)")
        let database = "sqlite:" + dataDir.appendingPathComponent("agentjobs.sqlite").path
        #expect(
            try await status(["tokens", "revoke", "tok_nope", "--database-url", database]) == 3,
            "not found: an unknown token")
        _ = try await job("twin", ["--agent-type", "datahealth", "--file-name", "a.csv"])
        _ = try await job("twin", ["--agent-type", "datahealth", "--file-name", "b.csv"])
        let (ambiguous, listing) = try await cli(["jobs", "show", "twin"], port: dev.port, token: token)
        #expect(ambiguous == 2, "an ambiguous name is a usage error: \(listing)")
        #expect(listing.contains("2 jobs are named 'twin'") && listing.components(separatedBy: "job_").count == 3)
        #expect(try await status(["jobs", "run", slow, "--wait", "--timeout", "1"]) == 124, "--wait timed out")
        #expect(try await status(["jobs", "run", slow]) == 4, "conflict: the job has an active run")
        #expect(try await status(["jobs", "delete", slow]) == 4, "conflict: no delete with an active run")
        let (_, runs) = try await cli(["runs", "list", "--job", slow, "-o", "json"], port: dev.port, token: token)
        let active = try #require(
            try JSONDecoder().decode(JSONValue.self, from: Data(runs.utf8))["runs"]?.array.first?["id"]?.string)
        #expect(try await status(["runs", "wait", active, "--timeout", "1"]) == 124, "runs wait timed out")
        #expect(try await status(["runs", "cancel", active]) == 0)
        #expect(try await status(["runs", "wait", active, "--timeout", "60"]) == 7, "runs wait: it ended canceled")
        await dev.stop()
    }
}

extension CrashRecoveryTests {
    @Test("-o json: each client command prints JSON a script can parse, and runs watch one object per line")
    func jsonEverywhere() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-json-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let dev = try await AgentJobsProcess(dataDir: dataDir)
        let token = try String(contentsOf: dataDir.appendingPathComponent("admin-token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let adminToken = token
        func json(_ arguments: [String], token: String? = nil) async throws -> JSONValue {
            let (status, output) = try await cli(
                arguments + ["-o", "json"], port: dev.port, token: token ?? adminToken)
            #expect(status == 0, "\(arguments): \(output)")
            return try JSONDecoder().decode(JSONValue.self, from: Data(output.utf8))
        }
        let job = try await json(
            [
                "jobs", "create", "--name", "sched", "--host", "local", "--agent-type", "datahealth", "--file-name",
                "sleep-30", "--cron", "0 3 * * *",
            ])
        let jobId = try #require(job["id"]?.string)
        #expect(try await json(["jobs", "pause", "sched"])["schedule"]?["paused"] == .bool(true))
        #expect(try await json(["jobs", "resume", jobId])["schedule"]?["paused"] == .bool(false))

        // runs watch, started before the run: its lines are the run's states, each a JSON object.
        let watch = SpawnedProcess()
        watch.executableURL = AgentJobsProcess.binary
        watch.arguments = ["runs", "watch", "--job", jobId, "-o", "json"]
        var environment = ProcessInfo.processInfo.environment
        environment["AGENTJOBS_URL"] = "http://127.0.0.1:\(dev.port)"
        environment["AGENTJOBS_TOKEN"] = token
        watch.environment = environment
        let watched = CollectedPipe()
        watch.standardOutput = watched.pipe
        watch.standardError = FileHandle.nullDevice
        try watch.run()
        defer { if watch.isRunning { watch.terminate() } }
        try await Task.sleep(for: .seconds(1.5))

        let run = try await json(["jobs", "run", "sched"])
        let runId = try #require(run["id"]?.string)
        #expect(try await json(["runs", "cancel", runId])["id"]?.string == runId)
        #expect(try await cli(["runs", "wait", runId, "--timeout", "60"], port: dev.port, token: token).0 == 7)
        try await Task.sleep(for: .seconds(1.5))
        watch.terminate()
        _ = await watch.exit()
        let lines = String(decoding: await watched.end(), as: UTF8.self)
            .split(separator: "\n")
        let states = try lines.map { try JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
        #expect(states.allSatisfy { $0["id"]?.string == runId }, "\(lines)")
        #expect(states.last?["status"]?.string == "canceled", "\(lines)")

        let deleted = try await json(["jobs", "delete", "sched"])
        #expect(deleted["id"]?.string == jobId && deleted["deleted"] == .bool(true))
        let created = try await json([
            "tokens", "create", "--scope", "read", "--name", "script", "--database-url",
            "sqlite:" + dataDir.appendingPathComponent("agentjobs.sqlite").path,
        ])
        let secret = try #require(created["token"]?.string)
        #expect(created["scope"]?.string == "read")
        #expect(try await json(["hosts", "list"], token: secret)["hosts"]?.array.count == 1, "the new token works")
        await dev.stop()
    }
}

extension CrashRecoveryTests {
    @Test("the client settings file: profiles by name, flags and environment first, a token file only its owner reads")
    func clientProfiles() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-profile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let dev = try await AgentJobsProcess(dataDir: dataDir)
        let tokenFile = dataDir.appendingPathComponent("admin-token")
        let token = try String(contentsOf: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let config = dataDir.appendingPathComponent("client-config")
        try Data(
            """
            # two control planes
            [default]
            url = http://127.0.0.1:\(dev.port)
            token-file = \(tokenFile.path)

            [down]
            url = http://127.0.0.1:1
            token = ajt_not_used

            """.utf8
        ).write(to: config)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: config.path)

        func run(_ arguments: [String], _ extra: [String: String] = [:]) async throws -> (Int32, String) {
            var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AGENTJOBS_") }
            environment["AGENTJOBS_CLIENT_CONFIG"] = config.path
            environment.merge(extra) { $1 }
            return try await cli(arguments, environment: environment)
        }
        #expect(try await run(["hosts", "list"]).0 == 0, "the default profile, its token from its file")
        #expect(try await run(["hosts", "list", "--profile", "down"]).0 == 6)
        #expect(try await run(["hosts", "list"], ["AGENTJOBS_PROFILE": "down"]).0 == 6)
        #expect(
            try await run(["hosts", "list", "--profile", "down"], ["AGENTJOBS_URL": "http://127.0.0.1:\(dev.port)"]).0
                == 5, "the environment's URL wins, the profile's token is used and refused")
        #expect(
            try await run(
                ["hosts", "list", "--profile", "down", "--url", "http://127.0.0.1:\(dev.port)"],
                ["AGENTJOBS_TOKEN": token]
            ).0 == 0, "flags and environment win over the profile")
        let (missing, listing) = try await run(["hosts", "list", "--profile", "nope"])
        #expect(missing == 2 && listing.contains("profiles: default, down"), "\(listing)")

        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: config.path)
        let (exposed, refusal) = try await run(["hosts", "list"])
        #expect(exposed == 2 && refusal.contains("chmod 600"), "a token others may read: \(refusal)")
        await dev.stop()
    }
}
