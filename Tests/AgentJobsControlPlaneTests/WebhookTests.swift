import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@Suite("Webhooks")
struct WebhookTests {
    static let secret = "receiver-secret-0123456789"

    /// A job of the fixture's host and `count` runs of it that failed.
    static func failedRuns(_ fixture: APIFixture, count: Int, name: String = "nightly") async throws -> [Run] {
        let job = try await fixture.store.createJob(
            JobDefinition(
                name: name, hostId: fixture.hostId, agentType: .datahealth, parameters: .file(fileName: "f")),
            now: Date())
        var runs: [Run] = []
        for _ in 0..<count {
            let run = try await fixture.store.triggerRun(jobId: job.id, trigger: .api, scheduledAt: nil, now: Date())
            _ = try await fixture.store.applyRunEvents(
                [
                    RunLifecycleEvent(
                        type: .failed, runId: run.id, jobId: job.id, hostId: run.hostId, dispatchEpoch: 1, sequence: 1,
                        at: Date(), exitCode: 2, errorSummary: "boom")
                ], now: Date())
            runs.append(run)
        }
        return runs
    }

    /// A sender that tries a failed delivery again after `retryDelay` (0: at once).
    static func sender(_ store: any Store, retryDelay: Duration) -> WebhookSender {
        var configuration = WebhookSender.Configuration()
        configuration.interval = .milliseconds(50)
        configuration.retryDelays = [retryDelay]
        return WebhookSender(store: store, configuration: configuration, logger: Logger(label: "test.webhooks"))
    }

    @Test(
        "a delivery is signed with the subscription's secret; a receiver that answers 500 three times, then 200, gets it exactly four times and it is marked delivered"
    )
    func retriedUntilDelivered() async throws {
        let fixture = try await APIFixture.make()
        let receiver = try await WebhookReceiver(secret: Self.secret, plan: ["500", "500", "500", "200"])
        let (webhook, _) = try await fixture.store.createWebhook(
            WebhookDefinition(url: receiver.url, events: [.runFailed], secret: Self.secret), by: nil, now: Date())
        let run = try #require(try await Self.failedRuns(fixture, count: 1).first)
        let sender = Self.sender(fixture.store, retryDelay: .zero)
        let task = Task { try await sender.run() }
        let requests = try await receiver.waitFor(4)
        // Time for a fifth request, were the delivery not marked delivered.
        try await Task.sleep(for: .milliseconds(500))
        task.cancel()
        _ = await task.result
        #expect(receiver.requests().count == 4)
        #expect(Set(requests.map(\.deliveryId)).count == 1)
        #expect(requests.allSatisfy { $0.signatureValid }, "a signature does not verify with the secret")
        #expect(requests.allSatisfy { $0.contentType == "application/cloudevents+json" })
        let body = requests[0].body
        #expect(body["type"] as? String == "agentjobs.run.failed")
        #expect(body["id"] as? String == requests[0].deliveryId)
        #expect((body["data"] as? [String: Any]).flatMap { $0["run"] as? [String: Any] }?["id"] as? String == run.id)
        #expect(!requests[0].bodyText.contains(Self.secret), "the secret was sent")
        let delivery = try #require(
            try await fixture.store.listWebhookDeliveries(webhookId: webhook.id, cursor: nil, limit: 10).deliveries
                .first)
        #expect(delivery.status == .delivered)
        #expect(delivery.attempts == 4)
        #expect(delivery.lastStatusCode == 200)
        await receiver.stop()
        await fixture.cleanup()
    }

    @Test(
        "a receiver that never answers holds only its own deliveries: run ends are recorded and other subscriptions served meanwhile; a redirect is not followed"
    )
    func slowReceiverStallsNothing() async throws {
        let fixture = try await APIFixture.make()
        let silent = try await WebhookReceiver(secret: Self.secret, plan: ["hang"])
        let prompt = try await WebhookReceiver(secret: Self.secret, plan: ["200"])
        let moved = try await WebhookReceiver(secret: Self.secret, plan: ["302"])
        var hooks: [Webhook] = []
        for receiver in [silent, prompt, moved] {
            hooks.append(
                try await fixture.store.createWebhook(
                    WebhookDefinition(url: receiver.url, events: [.runFailed], secret: Self.secret), by: nil,
                    now: Date()
                ).0)
        }
        // The default timeout: the silent receiver's requests hang for 10 s. No attempt is repeated
        // within the test (a redirect sent again at once would keep the machine busy for nothing).
        let sender = Self.sender(fixture.store, retryDelay: .seconds(600))
        let task = Task { try await sender.run() }
        _ = try await Self.failedRuns(fixture, count: 3)
        _ = try await silent.waitFor(3)
        // While those requests hang, more runs end and the prompt receiver gets every one of them.
        _ = try await Self.failedRuns(fixture, count: 3, name: "later")
        let served = try await prompt.waitFor(6, limit: .seconds(8))
        #expect(Set(served.map(\.deliveryId)).count == 6)
        let redirected = try await moved.waitFor(1)
        #expect(redirected.count >= 1)
        // The silent receiver's requests time out and are left to a later attempt.
        let deadline = ContinuousClock.now + .seconds(25)
        var stalled: [WebhookDelivery] = []
        while ContinuousClock.now < deadline {
            stalled = try await fixture.store.listWebhookDeliveries(webhookId: hooks[0].id, cursor: nil, limit: 10)
                .deliveries
            if stalled.count == 6 && stalled.allSatisfy({ $0.lastError != nil }) { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        task.cancel()
        _ = await task.result
        #expect(stalled.count == 6)
        #expect(stalled.allSatisfy { $0.status == .pending && $0.lastError == "no answer within 10 s" }, "\(stalled)")
        let bounced = try await fixture.store.listWebhookDeliveries(webhookId: hooks[2].id, cursor: nil, limit: 10)
            .deliveries
        #expect(
            bounced.contains { $0.lastStatusCode == 302 && $0.lastError?.contains("not followed") == true },
            "\(bounced)")
        #expect(bounced.allSatisfy { $0.status == .pending })
        for receiver in [silent, prompt, moved] { await receiver.stop() }
        await fixture.cleanup()
    }

    @Test(
        "webhooks through the API: admin only, the secret shown once, bad subscriptions refused naming the field, deliveries listed"
    )
    func api() async throws {
        let fixture = try await APIFixture.make()
        try await fixture.application().test(.router) { client in
            let body = #"{"url":"https://hooks.example.com/agentjobs","events":["run.failed","run.timed_out"]}"#
            let (forbidden, _) = try await client.call(.post, "/api/v1/webhooks", token: fixture.writer, body: body)
            #expect(forbidden == .forbidden)
            let (created, response) = try await client.call(.post, "/api/v1/webhooks", token: fixture.admin, body: body)
            #expect(created == .created)
            let id = try #require(response["webhook"]?["id"]?.string)
            #expect(response["secret"]?.string?.hasPrefix("whsec_") == true)
            #expect(response["webhook"]?["format"]?.string == "cloudevents")
            #expect(response["webhook"]?["jobId"] == .null)
            let (_, list) = try await client.call(.get, "/api/v1/webhooks", token: fixture.admin)
            #expect(list["webhooks"]?.array.map { $0["id"]?.string } == [id])
            #expect(list["webhooks"]?.array.first?["secret"] == nil, "a listing shows a secret")
            let (_, shown) = try await client.call(.get, "/api/v1/webhooks/\(id)", token: fixture.admin)
            #expect(shown["events"]?.array.compactMap(\.string) == ["run.failed", "run.timed_out"])
            let (_, deliveries) = try await client.call(
                .get, "/api/v1/webhooks/\(id)/deliveries", token: fixture.admin)
            #expect(deliveries["deliveries"]?.array.isEmpty == true)
            for (bad, field) in [
                (#"{"url":"ftp://x.example.com","events":["run.failed"]}"#, "url"),
                (#"{"url":"https://user:pw@x.example.com","events":["run.failed"]}"#, "url"),
                (#"{"url":"https://x.example.com","events":[]}"#, "events"),
                (#"{"url":"https://x.example.com","events":["run.started"]}"#, "events[0]"),
                (#"{"url":"https://x.example.com","events":["run.failed"],"format":"xml"}"#, "format"),
                (#"{"url":"https://x.example.com","events":["run.failed"],"secret":"short"}"#, "secret"),
                (#"{"url":"https://x.example.com","events":["run.failed"],"jobId":"job_missing"}"#, "jobId"),
                (#"{"url":"https://x.example.com","events":["run.failed"],"retries":3}"#, "retries"),
            ] {
                let (status, refusal) = try await client.call(
                    .post, "/api/v1/webhooks", token: fixture.admin, body: bad)
                #expect(status == .unprocessableContent, "\(bad)")
                #expect(refusal["error"]?["field"]?.string == field, "\(bad): \(refusal)")
            }
            let (deleted, _) = try await client.call(.delete, "/api/v1/webhooks/\(id)", token: fixture.admin)
            #expect(deleted == .noContent)
            let (gone, _) = try await client.call(.get, "/api/v1/webhooks/\(id)/deliveries", token: fixture.admin)
            #expect(gone == .notFound)
            let (_, audit) = try await client.call(.get, "/api/v1/audit?kind=webhook", token: fixture.admin)
            #expect(
                audit["entries"]?.array.compactMap { $0["action"]?.string } == ["webhook.deleted", "webhook.created"])
        }
        await fixture.cleanup()
    }
}

extension CrashRecoveryTests {
    @Test(
        "kill -9 of agentjobs dev while a webhook request is in flight loses nothing: the restarted sender delivers it")
    func killNineMidDelivery() async throws {
        let receiver = try await WebhookReceiver(secret: WebhookTests.secret, plan: ["hang", "200"])
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-webhook-kill-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let environment = ["AGENTJOBS_WEBHOOK_TIMEOUT_SECONDS": "2"]
        var dev = try await Dev.start(dataDir, environment: environment, test: self)
        let body = #"{"url":"\#(receiver.url)","events":["run.failed"],"secret":"\#(WebhookTests.secret)"}"#
        let (created, response) = try await request(.POST, dev.base + "/webhooks", token: dev.token, body: body)
        #expect(created == 201, "\(response)")
        let webhookId = try #require(response["webhook"]?["id"]?.string)
        _ = try await dev.runJob("fails", file: "fail", retry: "null", test: self)
        _ = try await receiver.waitFor(1)
        await dev.process.kill9()
        dev = try await Dev.start(dataDir, environment: environment, test: self)
        let requests = try await receiver.waitFor(2, limit: .seconds(30))
        #expect(requests.count == 2)
        #expect(requests[0].deliveryId == requests[1].deliveryId)
        #expect(requests.allSatisfy { $0.signatureValid })
        let deadline = ContinuousClock.now + .seconds(10)
        var delivery: JSONValue?
        while ContinuousClock.now < deadline {
            let (_, page) = try await request(
                .GET, dev.base + "/webhooks/\(webhookId)/deliveries", token: dev.token)
            delivery = page["deliveries"]?.array.first
            if delivery?["status"]?.string == "delivered" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(delivery?["status"]?.string == "delivered", "\(String(describing: delivery))")
        #expect(delivery?["attempts"]?.number == 2)
        let port = dev.process.port
        let (listed, list) = try await cli(["webhooks", "list"], port: port, token: dev.token)
        #expect(listed == 0 && list.contains(receiver.url) && list.contains("run.failed"), "\(list)")
        let (shown, deliveries) = try await cli(["webhooks", "deliveries", webhookId], port: port, token: dev.token)
        #expect(shown == 0 && deliveries.contains("delivered"), "\(deliveries)")
        await receiver.stop()
        await dev.process.stop()
    }
}
