import AgentJobsCore
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Testing

@Suite("Store conformance: webhooks")
struct WebhookStoreTests {
    @Test(
        "a run's end writes one delivery per subscription that wants it, with the end, its body fixed then",
        arguments: StoreKind.allCases)
    func deliveriesWithTheEnd(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let t = fixture.now
        let job = try await fixture.job("watched")
        let other = try await fixture.job("other")
        let (all, secret) = try await store.createWebhook(
            WebhookDefinition(url: "https://hooks.example.com/a", events: [.runFailed, .runSucceeded]), by: nil,
            now: t)
        #expect(secret.hasPrefix("whsec_"))
        let (onlyJob, _) = try await store.createWebhook(
            WebhookDefinition(
                url: "https://hooks.example.com/b", events: [.runFailed], jobId: job.id, format: .slack,
                secret: "a-secret-of-16-bytes"), by: nil, now: t)
        await #expect(throws: ValidationError.self) {
            _ = try await store.createWebhook(
                WebhookDefinition(url: "https://x.example.com", events: [.runFailed], jobId: "job_missing"), by: nil,
                now: t)
        }
        #expect(try await store.listWebhooks().map(\.id) == [all.id, onlyJob.id])
        #expect(try await store.webhook(id: onlyJob.id)?.format == .slack)

        let failed = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: t)
        let succeeded = try await store.triggerRun(jobId: other.id, trigger: .manual, scheduledAt: nil, now: t)
        _ = try await store.applyRunEvents(
            [
                RunEventStoreTests.event(.failed, failed, sequence: 1, at: t),
                RunEventStoreTests.event(.started, succeeded, sequence: 1, at: t),
            ], now: t)
        // Not ended yet: nothing for the started run.
        #expect(try await store.listWebhookDeliveries(webhookId: all.id, cursor: nil, limit: 10).deliveries.count == 1)
        _ = try await store.applyRunEvents(
            [RunEventStoreTests.event(.succeeded, succeeded, sequence: 2, at: t)], now: t)
        // A replayed end writes nothing more.
        _ = try await store.applyRunEvents([RunEventStoreTests.event(.failed, failed, sequence: 1, at: t)], now: t)

        let toAll = try await store.listWebhookDeliveries(webhookId: all.id, cursor: nil, limit: 10).deliveries
        #expect(toAll.map(\.event) == [.runSucceeded, .runFailed])
        #expect(toAll.map(\.subject) == [succeeded.id, failed.id])
        #expect(toAll.allSatisfy { $0.status == .pending && $0.attempts == 0 && $0.nextAttemptAt == t })
        let toJob = try await store.listWebhookDeliveries(webhookId: onlyJob.id, cursor: nil, limit: 10).deliveries
        #expect(toJob.map(\.subject) == [failed.id])

        // Claimed in the order due; each claim leases it.
        let claimed = try await store.claimWebhookDeliveries(now: t, lease: .seconds(30), limit: 10)
        #expect(claimed.count == 3)
        #expect(claimed.allSatisfy { $0.attempt == 1 })
        #expect(
            try await store.claimWebhookDeliveries(now: t.addingTimeInterval(29), lease: .seconds(30), limit: 10)
                .isEmpty)
        let cloudEvent = try #require(claimed.first { $0.url == all.url && $0.deliveryId == toAll[1].id })
        #expect(cloudEvent.secret == secret)
        let body = try JSONParser.parse(cloudEvent.body)
        #expect(body["type"] == .string("agentjobs.run.failed"))
        #expect(body["id"] == .string(cloudEvent.deliveryId))
        #expect(body["specversion"] == .string("1.0"))
        guard case .object(let data) = body["data"], case .object(let run) = data["run"] else {
            Issue.record("no run in \(body)")
            return
        }
        #expect(run["id"] == .string(failed.id))
        #expect(run["status"] == .string("failed"))
        let slack = try #require(claimed.first { $0.url == onlyJob.url })
        #expect(slack.secret == "a-secret-of-16-bytes")
        let text = try JSONParser.parse(slack.body)["text"]
        #expect(
            text
                == .string(
                    "AgentJobs: run \(failed.id) of job watched on host \(fixture.host.id) failed (exit 3): conn-a: boom"
                ))

        // A failed attempt is tried again when due; a stale sender's report is ignored; one not
        // delivered in time is given up.
        let retryAt = t.addingTimeInterval(40)
        let otherSend = try #require(claimed.first { $0.url == all.url && $0.deliveryId != cloudEvent.deliveryId })
        try await store.recordWebhookAttempt(
            deliveryId: otherSend.deliveryId, attempt: 1, result: .delivered(statusCode: 200), now: t)
        try await store.recordWebhookAttempt(
            deliveryId: slack.deliveryId, attempt: 1,
            result: .failed(statusCode: nil, error: "no answer within 10 s", nextAttemptAt: nil), now: t)
        try await store.recordWebhookAttempt(
            deliveryId: cloudEvent.deliveryId, attempt: 1,
            result: .failed(statusCode: 500, error: "HTTP 500", nextAttemptAt: retryAt), now: t)
        let waiting = try await store.claimWebhookDeliveries(
            now: t.addingTimeInterval(39), lease: .seconds(30), limit: 10)
        #expect(waiting.isEmpty)
        let again = try await store.claimWebhookDeliveries(now: retryAt, lease: .seconds(30), limit: 10)
        #expect(again.map(\.deliveryId) == [cloudEvent.deliveryId])
        #expect(again.first?.attempt == 2)
        try await store.recordWebhookAttempt(
            deliveryId: cloudEvent.deliveryId, attempt: 1, result: .delivered(statusCode: 200), now: retryAt)
        try await store.recordWebhookAttempt(
            deliveryId: cloudEvent.deliveryId, attempt: 2, result: .delivered(statusCode: 204), now: retryAt)
        let delivered = try #require(
            try await store.listWebhookDeliveries(webhookId: all.id, cursor: nil, limit: 10).deliveries.first {
                $0.id == cloudEvent.deliveryId
            })
        #expect(delivered.status == .delivered)
        #expect(delivered.attempts == 2)
        #expect(delivered.lastStatusCode == 204)
        #expect(delivered.deliveredAt == retryAt)
        let givenUp = try await store.listWebhookDeliveries(webhookId: onlyJob.id, cursor: nil, limit: 10).deliveries
        #expect(givenUp.first?.status == .failed)
        #expect(givenUp.first?.lastError == "no answer within 10 s")

        // Retention takes the ended deliveries written before the cutoff, never a pending one.
        let pendingRun = try await store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: t)
        _ = try await store.applyRunEvents([RunEventStoreTests.event(.failed, pendingRun, sequence: 1, at: t)], now: t)
        #expect(try await store.deleteWebhookDeliveries(before: t.addingTimeInterval(1), limit: 100) == 3)
        #expect(try await store.listWebhookDeliveries(webhookId: all.id, cursor: nil, limit: 10).deliveries.count == 1)
        // Deleting a subscription takes its deliveries; both are audited.
        try await store.deleteWebhook(id: all.id, by: nil, now: t)
        #expect(try await store.webhook(id: all.id) == nil)
        let left = try await store.claimWebhookDeliveries(
            now: t.addingTimeInterval(3600), lease: .seconds(30), limit: 10)
        #expect(left.map(\.url) == [onlyJob.url], "only the other subscription's pending delivery is left")
        await #expect(throws: StoreError.self) { try await store.deleteWebhook(id: all.id, by: nil, now: t) }
        let audit = try await store.listAudit(AuditFilter(targetKind: "webhook"), cursor: nil, limit: 10).entries
        #expect(audit.map(\.action) == [.webhookDeleted, .webhookCreated, .webhookCreated])
        #expect(audit.allSatisfy { !($0.summary ?? "").contains("a-secret") })
    }

    @Test(
        "a cancel withdrawn before dispatch and a queue timeout on an offline host are told like any end",
        arguments: StoreKind.allCases)
    func controlPlaneEnds(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let t = fixture.now
        let (webhook, _) = try await store.createWebhook(
            WebhookDefinition(url: "http://127.0.0.1:9/x", events: [.runCanceled, .runTimedOut]), by: nil, now: t)
        let canceled = try await store.triggerRun(
            jobId: try await fixture.job("a").id, trigger: .api, scheduledAt: nil, now: t)
        _ = try await store.requestCancel(runId: canceled.id, now: t)
        let expiring = try await store.triggerRun(
            jobId: try await fixture.job("b").id, trigger: .api, scheduledAt: nil, now: t)
        _ = try await store.closeRunsOfOfflineHosts(
            [fixture.host.id: t], lost: [], now: expiring.queueDeadline.addingTimeInterval(1))
        let deliveries = try await store.listWebhookDeliveries(webhookId: webhook.id, cursor: nil, limit: 10).deliveries
        #expect(deliveries.map(\.event) == [.runTimedOut, .runCanceled])
        #expect(deliveries.map(\.subject) == [expiring.id, canceled.id])
    }

    @Test(
        "a host judged lost is told once per silence, to subscriptions of every job that want host.lost",
        arguments: StoreKind.allCases)
    func hostLost(kind: StoreKind) async throws {
        let (store, cleanup) = try await kind.open()
        defer { Task { await cleanup() } }
        let fixture = try await Fixture(store)
        let t = fixture.now
        let (hosts, _) = try await store.createWebhook(
            WebhookDefinition(url: "https://hooks.example.com/hosts", events: [.hostLost], format: .slack), by: nil,
            now: t)
        let (runsOnly, _) = try await store.createWebhook(
            WebhookDefinition(url: "https://hooks.example.com/runs", events: [.runFailed]), by: nil, now: t)
        let host = fixture.host.id
        for second in 0..<3 {
            _ = try await store.closeRunsOfOfflineHosts(
                [host: t], lost: [host], now: t.addingTimeInterval(Double(600 + second)))
        }
        var told = try await store.listWebhookDeliveries(webhookId: hosts.id, cursor: nil, limit: 10).deliveries
        #expect(told.map(\.event) == [.hostLost])
        #expect(told.map(\.subject) == [host])
        #expect(
            try await store.listWebhookDeliveries(webhookId: runsOnly.id, cursor: nil, limit: 10).deliveries.isEmpty)
        let send = try #require(
            try await store.claimWebhookDeliveries(now: t.addingTimeInterval(700), lease: .seconds(30), limit: 10).first
        )
        let text = try JSONParser.parse(send.body)["text"]
        #expect(
            text
                == .string(
                    "AgentJobs: host db-1 (\(host)) is lost: no heartbeat since it registered; its running runs failed as host lost, and its queued runs wait for it until their queue deadline"
                ))
        // Heard from again, then silent again: told again.
        _ = try await store.recordHeartbeat(
            HostHeartbeat(
                hostId: host, sentAt: t.addingTimeInterval(800), version: "1", managedAgents: [.datahealth],
                activeRuns: [], driver: "process"), partition: 0, receivedAt: t.addingTimeInterval(800))
        _ = try await store.closeRunsOfOfflineHosts(
            [host: t.addingTimeInterval(800)], lost: [host], now: t.addingTimeInterval(2000))
        told = try await store.listWebhookDeliveries(webhookId: hosts.id, cursor: nil, limit: 10).deliveries
        #expect(told.count == 2)
        // A subscription to one job's runs cannot ask for host.lost.
        #expect(throws: ValidationError.self) {
            _ = try WebhookDefinition.parse(
                try JSONParser.parse(
                    #"{"url":"https://x.example.com","events":["run.failed","host.lost"],"jobId":"job_1"}"#))
        }
    }
}
