import AgentJobsCore
import AgentJobsOrchestrator
import AgentJobsTestSupport
import AsyncHTTPClient
import Foundation
import Testing

/// What an operator sees of a running system: every role's `/metrics` (parsed by a real
/// Prometheus parser) says exactly what a known workload did, JSON logs parse line by line and
/// hold no secret, and `/readyz` of the Kafka roles follows the broker (serve's stays ready).
@Suite(
    "Metrics, logs and readiness end to end", .serialized, .timeLimit(.minutes(8)),
    .enabled(if: EndToEnd.shouldRun, EndToEnd.skipReason))
struct ObservabilityTests {
    @Test(
        "after 3 succeeded runs, 2 failed runs, one forged event and one lost host, every role's /metrics says exactly that; JSON logs parse and hold no secret"
    )
    func metricsAfterAKnownWorkload() async throws {
        _ = try RequiredService.prometheusClient.require()
        // A broker of its own: the shared one holds other tests' events, which a new aggregator
        // group reads from the start (and dead-letters: their hosts are not this cluster's).
        try await Self.withPrivateBroker { tansu in try await Self.knownWorkload(brokers: try await tansu.start()) }
    }

    private static func knownWorkload(brokers: String) async throws {
        try await Cluster.run(logFormat: "json", brokers: brokers) { cluster in
            let host = try await cluster.addHost(name: "metrics")
            let lost = try await cluster.addHost(name: "metrics-lost")
            let succeeding = try await cluster.createJob(hostId: host)
            let failing = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"fail"}"#)
            for job in [succeeding, failing, succeeding, failing, succeeding] {
                let run = try await cluster.api.trigger(job)
                try await cluster.waitForRun(run) { ["succeeded", "failed"].contains($0["status"]?.string ?? "") }
            }
            // One message no host signed: dead-lettered by the aggregator.
            try await AggregatorTests.withProducer(cluster) { producer in
                try await AggregatorTests.send(
                    producer, [OutgoingMessage(topic: Topic.runEvents, key: "forged", value: Array("{}".utf8))])
            }
            // A host that stops without a word: offline after the user's default grace (30 s).
            await cluster.orchestrators[lost]?.kill9()
            try await cluster.waitForHost(lost, status: "offline", timeout: .seconds(90))

            let serve = try await Self.scrape(cluster.baseURL)
            let aggregatePort = try await Cluster.adminPort(of: cluster.aggregators[0])
            let orchestrator = try #require(cluster.orchestrators[host])
            let orchestratePort = try await Cluster.adminPort(of: orchestrator)

            // serve: the triggers, their dispatches, the HTTP requests by route.
            #expect(serve.value("agentjobs_runs_created_total", ["trigger": "api"]) == 5)
            #expect(serve.value("agentjobs_outbox_published_total", ["type": "dispatch"]) == 5)
            #expect(serve.value("agentjobs_run_dispatch_latency_seconds_count") == 5)
            #expect(serve.value("agentjobs_outbox_unsent_messages") == 0)
            #expect((serve.value("agentjobs_http_requests_total", ["route": "/api/v1/jobs/{id}/runs"]) ?? 0) == 5)
            // No label holds an id: routes are patterns, never paths.
            let identifying = serve.filter { sample in
                sample.labels.values.contains { $0.contains("run_") || $0.contains("job_") || $0.contains("host_") }
            }
            #expect(identifying.isEmpty, "labels with ids: \(identifying.prefix(5))")

            // aggregate: the ends by status, the dead letter, the hosts by status. Polled: the
            // gauges follow host tracking's sweep (every 2 s).
            var aggregate: [MetricSample] = []
            try await waitUntil("the aggregator's metrics show the lost host", within: .seconds(30)) {
                aggregate = try await Self.scrape("http://127.0.0.1:\(aggregatePort)")
                return aggregate.value("agentjobs_hosts", ["status": "offline"]) == 1
            }
            let datahealth = ["agent_type": "datahealth"]
            #expect(
                aggregate.value("agentjobs_runs_ended_total", datahealth.merging(["status": "succeeded"]) { $1 }) == 3)
            #expect(aggregate.value("agentjobs_runs_ended_total", datahealth.merging(["status": "failed"]) { $1 }) == 2)
            // Failed runs started too (their agent exited 2).
            #expect(aggregate.value("agentjobs_run_start_latency_seconds_count", datahealth) == 5)
            #expect(aggregate.value("agentjobs_dead_letters_total", ["topic": Topic.runEvents]) == 1)
            #expect(aggregate.value("agentjobs_hosts", ["status": "online"]) == 1)
            #expect(aggregate.value("agentjobs_hosts", ["status": "unknown"]) == 0)
            #expect((aggregate.value("agentjobs_aggregator_events_total", ["outcome": "applied"]) ?? 0) >= 10)
            #expect((aggregate.value("agentjobs_heartbeats_received_total") ?? 0) > 0)
            #expect(
                aggregate.value("agentjobs_consumer_lag_messages", ["topic": Topic.runEvents]) != nil,
                "no lag for the aggregator's partitions")

            // orchestrate: five launches, nothing running or waiting, heartbeats sent.
            let host0 = try await Self.scrape("http://127.0.0.1:\(orchestratePort)")
            #expect(host0.value("agentjobs_host_launches_total", ["result": "started"]) == 5)
            #expect(host0.value("agentjobs_host_launch_seconds_count") == 5)
            #expect(host0.value("agentjobs_host_agents_running") == 0)
            #expect(host0.value("agentjobs_host_events_unpublished") == 0)
            #expect((host0.value("agentjobs_host_heartbeats_total", ["result": "sent"]) ?? 0) > 0)
            #expect((host0.value("agentjobs_host_journal_write_seconds_count") ?? 0) >= 10)
            #expect(host0.value("agentjobs_consumer_lag_messages", ["topic": Topic.dispatch]) == 0)

            // Every metric a role exposes is documented.
            let documented = try String(
                contentsOf: EndToEnd.repository.appendingPathComponent("docs/metrics.md"), encoding: .utf8)
            let families = Set((serve + aggregate + host0).map { Self.family(of: $0) })
            let undocumented = families.filter { !documented.contains("`\($0)`") }
            #expect(undocumented.isEmpty, "not in docs/metrics.md: \(undocumented.sorted())")

            // JSON logs: every line of every role is one object with the four fixed members.
            let host0Identity = try HostIdentity.load(from: try #require(cluster.hostDirectories[host]))
            let secrets = [cluster.api.token, host0Identity.credential]
            for process in [cluster.serve].compactMap({ $0 }) + cluster.aggregators + [orchestrator] {
                let lines = process.capturedOutput.split(separator: "\n")
                #expect(lines.count > 10, "\(process.name) logged only \(lines.count) lines")
                for line in lines {
                    let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                    #expect(
                        object.map { ["time", "level", "logger", "message"].allSatisfy($0.keys.contains) } == true,
                        "\(process.name) wrote a line that is not a JSON log object: \(line)")
                }
                for secret in secrets {
                    #expect(!process.capturedOutput.contains(secret), "\(process.name) logged a secret")
                }
            }
            let access = cluster.serve?.capturedOutput.split(separator: "\n").filter { $0.contains(#""http request""#) }
            #expect((access?.count ?? 0) >= 5, "serve wrote no access log lines")
        }
    }

    @Test(
        "/readyz of aggregate and orchestrate answers 503 naming the broker while it is stopped and stops naming it once it is back; serve stays ready"
    )
    func readinessFollowsTheBroker() async throws {
        try await Self.withPrivateBroker { tansu in
            try await Cluster.run(brokers: try await tansu.start()) { cluster in
                let host = try await cluster.addHost(name: "ready")
                let orchestrator = try #require(cluster.orchestrators[host])
                let serve = cluster.baseURL
                let endpoints = [
                    ("aggregate", "http://127.0.0.1:\(try await Cluster.adminPort(of: cluster.aggregators[0]))"),
                    ("orchestrate", "http://127.0.0.1:\(try await Cluster.adminPort(of: orchestrator))"),
                ]
                for (role, base) in [("serve", serve)] + endpoints {
                    try await waitUntil("\(role) ready", within: .seconds(30)) { await Self.readyStatus(base) == 200 }
                    #expect(try await Self.get(base + "/healthz").status == 200)
                }
                await tansu.stop()
                let stopped = ContinuousClock.now
                for (role, base) in endpoints {
                    var body = ""
                    try await waitUntil("\(role) /readyz answers 503", within: .seconds(20)) {
                        // A probe that fails on the way (a reused connection closed) is asked again.
                        guard let answer = try? await Self.ready(base) else { return false }
                        body = answer.body
                        return answer.status == 503
                    }
                    #expect(body.contains(#""broker""#), "\(role) did not name the broker: \(body)")
                    // Alive all the same.
                    #expect(try await Self.get(base + "/healthz").status == 200)
                }
                print(
                    "readiness: aggregate and orchestrate reported the broker outage within \(ContinuousClock.now - stopped)"
                )
                // serve keeps answering the API during the outage (runs wait in the outbox), so it
                // stays in the load balancer's rotation.
                let serveReady = try await Self.ready(serve)
                #expect(serveReady.status == 200, "serve left rotation during a Kafka outage: \(serveReady.body)")
                _ = try await cluster.api.trigger(try await cluster.createJob(hostId: host))
                _ = try await tansu.start()
                // The test broker keeps its topics in memory: they are gone after its restart, and the
                // aggregator's groups own partitions again only once the topics are back (Tansu makes
                // them anew when asked, with its own partition count), which can take minutes. A real
                // Kafka keeps its topics: there the aggregator is ready again as soon as its group
                // rebalances. Here: orchestrate is ready again, and the aggregator no longer names
                // the broker.
                for (role, base) in endpoints {
                    var last = ""
                    do {
                        try await waitUntil("\(role) /readyz no longer names the broker", within: .seconds(90)) {
                            guard let answer = try? await Self.ready(base) else { return false }
                            last = "\(answer.status) \(answer.body)"
                            return role == "aggregate" ? !answer.body.contains(#""broker""#) : answer.status == 200
                        }
                    } catch {
                        Issue.record("\(role) /readyz still answers: \(last.isEmpty ? "(no answer)" : last)")
                        throw error
                    }
                }
                print(
                    "readiness: aggregate and orchestrate ready again \(ContinuousClock.now - stopped) after the broker stopped"
                )
            }
        }
    }

    /// Runs `body` with a Tansu broker of the test's own, torn down afterwards.
    static func withPrivateBroker(_ body: (TansuProcess) async throws -> Void) async throws {
        let tansu = TansuProcess()
        do {
            try await body(tansu)
        } catch {
            await tansu.tearDown()
            throw error
        }
        await tansu.tearDown()
    }

    /// The metric family a sample belongs to (`…_bucket`, `…_sum`, `…_count` of a histogram).
    static func family(of sample: MetricSample) -> String {
        guard sample.type == "histogram" else { return sample.name }
        for suffix in ["_bucket", "_sum", "_count"] where sample.name.hasSuffix(suffix) {
            return String(sample.name.dropLast(suffix.count))
        }
        return sample.name
    }

    static func scrape(_ base: String) async throws -> [MetricSample] {
        let answer = try await get(base + "/metrics")
        #expect(answer.status == 200)
        #expect(answer.contentType.hasPrefix("text/plain; version=0.0.4"))
        return try await PrometheusText.parse(answer.body)
    }

    /// `/readyz`'s status; nil when the request failed on the way (asked again by the caller).
    static func readyStatus(_ base: String) async -> UInt? {
        try? await ready(base).status
    }

    static func ready(_ base: String) async throws -> (status: UInt, body: String) {
        let answer = try await get(base + "/readyz")
        return (answer.status, answer.body)
    }

    static func get(_ url: String) async throws -> (status: UInt, contentType: String, body: String) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 8 << 20)
        return (
            response.status.code, response.headers.first(name: "content-type") ?? "",
            body.getString(at: body.readerIndex, length: body.readableBytes) ?? ""
        )
    }
}
