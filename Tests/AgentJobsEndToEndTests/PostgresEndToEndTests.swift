import AgentJobsCore
import AgentJobsTestSupport
import AsyncHTTPClient
import Foundation
import Synchronization
import Testing

/// The distributed shape on PostgreSQL: `serve` and `aggregate` replicas on one PostgreSQL database
/// of their own, orchestrators, the test broker, separate processes.
@Suite(
    "Distributed end to end on PostgreSQL", .serialized,
    .enabled(if: EndToEnd.shouldRun && RequiredService.postgres.shouldRun, EndToEnd.skipReason))
struct PostgresEndToEndTests {
    @Test("on PostgreSQL a triggered run succeeds, a second trigger meets the active run, and a cancel ends a long run")
    func runsOnPostgres() async throws {
        try await Cluster.run(aggregators: 2, database: .postgres) { cluster in
            let host = try await cluster.addHost(name: "pg")
            let job = try await cluster.createJob(hostId: host)
            let run = try await cluster.api.trigger(job)
            let done = try await cluster.waitForStatus(run, "succeeded")
            #expect(done["exitCode"]?.number == 0)
            #expect(done["startedAt"]?.string != nil)

            let long = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"sleep-300"}"#)
            let running = try await cluster.api.trigger(long)
            try await cluster.waitForStatus(running, "running")
            let conflict = try await cluster.api.call(.POST, "/jobs/\(long)/runs", expect: 409)
            #expect(conflict["error"]?["activeRunId"]?.string == running, "\(conflict)")
            try await cluster.api.call(.POST, "/runs/\(running)/cancel", expect: 202)
            try await cluster.waitForStatus(running, "canceled", timeout: .seconds(30))
            try await cluster.waitForHost(host, status: "online")
        }
    }

    @Test(
        "two serve, two aggregate, two orchestrators: triggers spread over both serve replicas while one is killed and restarted, then an aggregator: every run succeeds, each agent launched once"
    )
    func replicasSurviveKills() async throws {
        let count = Int(EndToEnd.environment["AGENTJOBS_TEST_REPLICA_RUNS"] ?? "") ?? 2_000
        try await Cluster.run(serves: 2, aggregators: 2, database: .postgres) { cluster in
            let hosts = [try await cluster.addHost(name: "pg-a"), try await cluster.addHost(name: "pg-b")]
            let jobs = try await concurrently(count, width: 16) { index in
                try await cluster.createJob(hostId: hosts[index % 2])
            }
            let triggered = Mutex(0)
            let chaos = Task {
                try await waitUntil("a third of the triggers", within: .seconds(300)) {
                    triggered.withLock { $0 } >= count / 3
                }
                await cluster.serves[1]?.kill9()
                try await Task.sleep(for: .seconds(1))
                try await cluster.restartServe(1)
                try await waitUntil("two thirds of the triggers", within: .seconds(300)) {
                    triggered.withLock { $0 } >= 2 * count / 3
                }
                await cluster.aggregators[0].kill9()
                try await cluster.restartAggregator(0)
            }
            let started = ContinuousClock.now
            let runs: [String]
            do {
                runs = try await concurrently(count, width: 16) { index in
                    let run = try await cluster.triggerOnce(jobs[index], preferring: index % 2)
                    triggered.withLock { $0 += 1 }
                    return run
                }
            } catch {
                chaos.cancel()
                _ = await chaos.result
                throw error
            }
            try await chaos.value
            print("replicas: \(count) triggers over two serve replicas in \(ContinuousClock.now - started)")
            #expect(Set(runs).count == count)
            try await Self.waitForAll(runs, in: cluster, toBe: "succeeded", timeout: .seconds(300))
            var launchedTwice: [String] = []
            for (index, run) in runs.enumerated() {
                let directory = try #require(cluster.hostDirectories[hosts[index % 2]])
                let launches = try String(
                    contentsOf: directory.appendingPathComponent("runs/\(run)/launches"), encoding: .utf8)
                if launches.split(separator: "\n").count != 1 { launchedTwice.append(run) }
            }
            #expect(launchedTwice.isEmpty, "agents launched more than once: \(launchedTwice.prefix(20))")
            let duplicates = cluster.orchestrators.values.map {
                $0.capturedOutput.components(separatedBy: "dispatch already handled").count - 1
            }.reduce(0, +)
            print("replicas: \(count) runs succeeded; \(duplicates) dispatches reached a host more than once")
        }
    }

    @Test("1,000 concurrent triggers of one job spread over two serve replicas: one run, 999 conflicts")
    func concurrentTriggersAcrossReplicas() async throws {
        try await Cluster.run(serves: 2, database: .postgres) { cluster in
            let host = try await cluster.addHost(name: "pg", startOrchestrator: false)
            let job = try await cluster.createJob(hostId: host)
            let answers = try await concurrently(1_000, width: 64) { index in
                try await cluster.apis[index % 2].call(.POST, "/jobs/\(job)/runs", body: "{}")
            }
            let created = answers.compactMap { $0["status"]?.string == "queued" ? $0["id"]?.string : nil }
            let conflicts = answers.filter { $0["error"]?["code"]?.string == "active_run" }
            #expect(created.count == 1)
            #expect(conflicts.count == 999)
            #expect(conflicts.allSatisfy { $0["error"]?["activeRunId"]?.string == created.first })
        }
    }

    @Test("a token revoked through one serve replica is refused by the other within 5 s")
    func revocationReachesReplicas() async throws {
        try await Cluster.run(serves: 2, database: .postgres) { cluster in
            let created = try await cluster.api.call(
                .POST, "/tokens", body: #"{"name":"short-lived","scope":"read"}"#, expect: 201)
            let id = try #require(created["token"]?["id"]?.string)
            let secret = try #require(created["secret"]?.string)
            let other = APIClient(baseURL: cluster.apis[1].baseURL, token: secret)
            try await other.call(.GET, "/jobs", expect: 200)
            try await cluster.api.call(.DELETE, "/tokens/\(id)", expect: 200)
            let revoked = ContinuousClock.now
            try await waitUntil("the other replica refuses the revoked token", within: .seconds(10)) {
                (try? await other.call(.GET, "/jobs", expect: 401)) != nil
            }
            let took = ContinuousClock.now - revoked
            print("replicas: a revoked token was refused by the other replica after \(took)")
            #expect(took <= .seconds(5))
        }
    }

    @Test(
        "PostgreSQL stopped and started mid-stream: /readyz reports the outage, the roles reconnect, no acknowledged trigger is lost"
    )
    func databaseRestart() async throws {
        let server = try await PrivatePostgresServer()
        do {
            try await Cluster.run(database: .postgresServer(server.url)) { cluster in
                let host = try await cluster.addHost(name: "pg")
                let jobs = try await concurrently(120, width: 8) { _ in try await cluster.createJob(hostId: host) }
                let acknowledged = Mutex<[String]>([])
                let triggering = Task {
                    for job in jobs {
                        if let run = try? await cluster.api.call(.POST, "/jobs/\(job)/runs", body: "{}", expect: 201),
                            let id = run["id"]?.string
                        {
                            acknowledged.withLock { $0.append(id) }
                        }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
                let ready = cluster.baseURL + "/readyz"
                try await waitUntil("30 acknowledged triggers", within: .seconds(300)) {
                    acknowledged.withLock { $0.count } >= 30
                }
                #expect(try await Self.status(of: ready) == 200)
                try await server.stop()
                let stopped = ContinuousClock.now
                try await waitUntil("/readyz answers 503", within: .seconds(10)) {
                    try await Self.status(of: ready) == 503
                }
                print("replicas: /readyz reported the outage after \(ContinuousClock.now - stopped)")
                try await Task.sleep(for: .seconds(5))
                try await server.resume()
                try await waitUntil("/readyz answers 200 again", within: .seconds(60)) {
                    try await Self.status(of: ready) == 200
                }
                print("replicas: ready again \(ContinuousClock.now - stopped) after the database stopped")
                // The console's run change feed listened on a connection the outage broke: it
                // listens again, and a poll waits on it as before.
                try await waitUntil("the run change feed is live again", within: .seconds(30)) {
                    (try? await cluster.api.call(.GET, "/runs/changes", expect: 200))?["live"] == .bool(true)
                }
                try await triggering.value
                let runs = acknowledged.withLock { $0 }
                #expect(runs.count >= 60, "triggers after the outage were acknowledged again")
                try await Self.waitForAll(runs, in: cluster, toBe: "succeeded", timeout: .seconds(120))
            }
        } catch {
            await server.remove()
            throw error
        }
        await server.remove()
    }

    @Test("SIGTERM of serve while PostgreSQL does not answer, a request waiting on it: serve stops within 20 s")
    func stopWhileDatabaseStalls() async throws {
        let server = try await PrivatePostgresServer()
        do {
            try await Cluster.run(database: .postgresServer(server.url)) { cluster in
                let serve = try #require(cluster.serves[0])
                try server.freeze()
                // The request waits on the database (up to an operation's limit, a minute), and the
                // server's graceful stop waits on the request.
                let waiting = Task { try? await cluster.api.call(.GET, "/jobs", expect: 200) }
                try await Task.sleep(for: .seconds(2))
                let signalled = ContinuousClock.now
                let stopped = await serve.stop(grace: .seconds(20))
                print("replicas: serve stopped \(ContinuousClock.now - signalled) after SIGTERM, the database frozen")
                try server.thaw()
                let answered = await waiting.value
                #expect(
                    answered == nil,
                    "the request was answered with the database frozen: \(answered.map { "\($0)" } ?? "")")
                #expect(stopped, "serve did not stop within 20 s of SIGTERM:\n\(serve.capturedOutput.suffix(4000))")
                #expect(serve.exitStatus == 0, "serve exited \(serve.exitStatus.map(String.init) ?? "-")")
            }
        } catch {
            await server.remove()
            throw error
        }
        await server.remove()
    }

    // MARK: Helpers

    /// Waits until every run of `runs` has `status` (any replica answers).
    static func waitForAll(_ runs: [String], in cluster: Cluster, toBe status: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var pending = Set(runs)
        var last: [String: String] = [:]
        while !pending.isEmpty {
            var cursor: String?
            repeat {
                let path = "/runs?limit=500" + (cursor.map { "&cursor=\($0)" } ?? "")
                guard let page = try? await cluster.api.call(.GET, path, expect: 200) else { break }
                for run in page["runs"]?.array ?? [] {
                    guard let id = run["id"]?.string, pending.contains(id) else { continue }
                    let current = run["status"]?.string ?? "?"
                    if current == status { pending.remove(id) } else { last[id] = current }
                }
                cursor = page["nextCursor"]?.string
            } while cursor != nil
            if pending.isEmpty { break }
            guard ContinuousClock.now < deadline else {
                let sample = pending.prefix(10).map { "\($0): \(last[$0] ?? "not listed")" }
                throw TestAPIError("\(pending.count) runs are not \(status) after \(timeout), e.g. \(sample)")
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// The HTTP status of a GET of `url`.
    static func status(of url: String) async throws -> UInt {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 16)
        return response.status.code
    }
}
