import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Webhooks

extension PostgresStore {
    public func createWebhook(_ definition: WebhookDefinition, by actor: RunRequester?, now: Date) async throws -> (
        Webhook, secret: String
    ) {
        let (webhook, secret) = definition.subscription(createdAt: now)
        try await write { db in
            if let jobId = webhook.jobId, try await db.query("SELECT 1 FROM jobs WHERE id = \(jobId)").isEmpty {
                throw ValidationError(field: "jobId", message: "no job with id '\(jobId)'")
            }
            try await db.query(
                """
                INSERT INTO webhooks (id, url, events, job_id, format, secret, created_at)
                VALUES (\(webhook.id), \(webhook.url), \(WebhookEvent.storedForm(webhook.events)), \(webhook.jobId),
                        \(webhook.format.rawValue), \(secret), \(StoredTime.ms(now)))
                """)
            try await Self.appendAudit(.webhookCreated(webhook, actor: actor, at: now), db)
        }
        return (webhook, secret)
    }

    public func listWebhooks() async throws -> [Webhook] {
        try await read { db in
            try await db.query("\(unescaped: Self.webhookSelect) ORDER BY seq").map { try Self.webhook($0) }
        }
    }

    public func webhook(id: String) async throws -> Webhook? {
        try await read { db in
            try await db.query("\(unescaped: Self.webhookSelect) WHERE id = \(id)").first.map { try Self.webhook($0) }
        }
    }

    public func deleteWebhook(id: String, by actor: RunRequester?, now: Date) async throws {
        try await write { db in
            guard
                let url = try await db.query("DELETE FROM webhooks WHERE id = \(id) RETURNING url").first.map({
                    try $0.decode(String.self)
                })
            else { throw StoreError(.notFound, "no webhook with id \(id)") }
            try await db.query("DELETE FROM webhook_deliveries WHERE webhook_id = \(id)")
            try await Self.appendAudit(
                AuditEntry(at: now, action: .webhookDeleted, actor: actor, targetId: id, targetName: url), db)
        }
    }

    public func listWebhookDeliveries(webhookId: String, cursor: String?, limit: Int) async throws
        -> WebhookDeliveryPage
    {
        let limit = max(0, limit)
        let after: Int64
        if let cursor {
            guard let sequence = PageCursor.decode(cursor) else { throw PageCursor.malformed }
            after = sequence
        } else {
            after = .max
        }
        return try await read { db in
            let rows = try await db.query(
                """
                SELECT * FROM webhook_deliveries WHERE webhook_id = \(webhookId) AND seq < \(after)
                ORDER BY seq DESC LIMIT \(limit + 1)
                """)
            let page = rows.prefix(limit)
            var next: String?
            if rows.count > limit, let last = page.last {
                next = PageCursor.encode(try StoredValues(last, table: "webhook_deliveries").value("seq", Int64.self))
            }
            return WebhookDeliveryPage(deliveries: try page.map { try Self.delivery($0) }, nextCursor: next)
        }
    }

    public func claimWebhookDeliveries(now: Date, lease: Duration, limit: Int) async throws -> [WebhookSend] {
        // Most passes find nothing: a read first, so no transaction is opened for that.
        let due = try await read { db in
            try await !db.query(
                """
                SELECT 1 FROM webhook_deliveries
                WHERE status = 'pending' AND next_attempt_at <= \(StoredTime.ms(now)) LIMIT 1
                """
            ).isEmpty
        }
        guard due else { return [] }
        let until = StoredTime.ms(now.addingTimeInterval(TimeInterval(lease.components.seconds)))
        return try await write { db in
            // SKIP LOCKED: senders of other replicas take other deliveries.
            let rows = try await db.query(
                """
                WITH claimed AS (
                    UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = \(until),
                        last_attempt_at = \(StoredTime.ms(now))
                    WHERE seq IN (
                        SELECT seq FROM webhook_deliveries
                        WHERE status = 'pending' AND next_attempt_at <= \(StoredTime.ms(now))
                            AND EXISTS (
                                SELECT 1 FROM webhooks w
                                WHERE w.id = webhook_id AND w.format IN ('cloudevents', 'slack'))
                        ORDER BY next_attempt_at LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                    RETURNING id, webhook_id, body, attempts, created_at
                )
                SELECT c.id, c.body, c.attempts, c.created_at, w.url, w.secret, w.format
                FROM claimed c JOIN webhooks w ON w.id = c.webhook_id
                """)
            return try rows.map { row in
                let stored = try StoredValues(row, table: "webhook_deliveries").identified()
                return WebhookSend(
                    deliveryId: stored.id, url: try stored.string(required: "url"),
                    secret: try stored.string(required: "secret"), format: try stored.known("format"),
                    body: Array(try stored.value("body", ByteBuffer.self).readableBytesView),
                    attempt: try stored.int(required: "attempts"), createdAt: try stored.date(required: "created_at"))
            }
        }
    }

    public func recordWebhookAttempt(deliveryId: String, attempt: Int, result: WebhookAttemptResult, now: Date)
        async throws
    {
        try await write { db in
            switch result {
            case .delivered(let code):
                try await db.query(
                    """
                    UPDATE webhook_deliveries SET status = 'delivered', delivered_at = \(StoredTime.ms(now)),
                        last_status_code = \(code), last_error = NULL, next_attempt_at = NULL
                    WHERE id = \(deliveryId) AND attempts = \(attempt) AND status = 'pending'
                    """)
            case .failed(let code, let error, let next):
                let status = next == nil ? WebhookDeliveryStatus.failed.rawValue : "pending"
                try await db.query(
                    """
                    UPDATE webhook_deliveries SET status = \(status), last_status_code = \(code),
                        last_error = \(error), next_attempt_at = \(StoredTime.ms(next))
                    WHERE id = \(deliveryId) AND attempts = \(attempt) AND status = 'pending'
                    """)
            }
        }
    }

    public func deleteWebhookDeliveries(before cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            try await db.query(
                """
                DELETE FROM webhook_deliveries WHERE seq IN (
                    SELECT seq FROM webhook_deliveries
                    WHERE created_at < \(StoredTime.ms(cutoff)) AND (status <> 'pending'
                        OR NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = webhook_id))
                    ORDER BY created_at LIMIT \(max(0, limit)))
                RETURNING seq
                """
            ).count
        }
    }

    /// What the control plane does when runs end, inside the transaction that records the ends:
    /// each one's retry (``writeRetry(of:retryable:now:_:)``) and a delivery for each webhook that
    /// wants it (the subscriptions read once for the batch).
    static func runsEnded(_ ended: [(run: Run, retryable: Bool)], now: Date, _ db: PostgresSession) async throws {
        guard !ended.isEmpty else { return }
        for (run, retryable) in ended { try await writeRetry(of: run, retryable: retryable, now: now, db) }
        guard ended.contains(where: { WebhookEvent(endOf: $0.run.status) != nil }) else { return }
        let webhooks = try await subscriptions(db)
        guard !webhooks.isEmpty else { return }
        for (run, _) in ended { try await insert(NewWebhookDelivery.end(of: run, to: webhooks, at: now), now: now, db) }
    }

    /// Marks the hosts host tracking judged lost, and writes a `host.lost` delivery for each one
    /// not already marked (once per silence: a heartbeat clears the mark), inside the caller's
    /// transaction.
    static func hostsLost(_ lost: Set<String>, now: Date, _ db: PostgresSession) async throws {
        guard !lost.isEmpty else { return }
        let marked = try await db.query(
            """
            UPDATE hosts SET lost_at = \(StoredTime.ms(now))
            WHERE id = ANY(\(lost.sorted())) AND lost_at IS NULL AND revoked_at IS NULL
            RETURNING *
            """
        ).map { try host($0) }
        guard !marked.isEmpty else { return }
        let webhooks = try await subscriptions(db)
        for host in marked.sorted(by: { $0.id < $1.id }) {
            try await insert(NewWebhookDelivery.loss(of: host, to: webhooks, at: now), now: now, db)
        }
    }

    /// The subscriptions; one this build cannot read (a later release's event or format) is passed
    /// over rather than failing the transaction that records what happened.
    private static func subscriptions(_ db: PostgresSession) async throws -> [Webhook] {
        try await db.query("\(unescaped: webhookSelect)").compactMap { try? webhook($0) }
    }

    private static func insert(_ deliveries: [NewWebhookDelivery], now: Date, _ db: PostgresSession) async throws {
        for delivery in deliveries {
            try await db.query(
                """
                INSERT INTO webhook_deliveries (id, webhook_id, event, subject_id, body, status, attempts,
                                                created_at, next_attempt_at)
                VALUES (\(delivery.id), \(delivery.webhookId), \(delivery.event.rawValue), \(delivery.subjectId),
                        \(ByteBuffer(bytes: delivery.body)), 'pending', 0, \(StoredTime.ms(now)), \(StoredTime.ms(now)))
                """)
        }
    }

    static let webhookSelect = "SELECT id, url, events, job_id, format, created_at FROM webhooks"

    static func webhook(_ row: PostgresRow) throws -> Webhook {
        let stored = try StoredValues(row, table: "webhooks").identified()
        let text = try stored.string(required: "events")
        guard let events = WebhookEvent.parseStored(text) else {
            throw StoreError(
                .corrupt, "webhooks.events of \(stored.id) holds \"\(text)\", which this build does not know")
        }
        return Webhook(
            id: stored.id, url: try stored.string(required: "url"), events: events, jobId: try stored.string("job_id"),
            format: try stored.known("format"), createdAt: try stored.date(required: "created_at"))
    }

    static func delivery(_ row: PostgresRow) throws -> WebhookDelivery {
        let stored = try StoredValues(row, table: "webhook_deliveries").identified()
        return WebhookDelivery(
            id: stored.id, webhookId: try stored.string(required: "webhook_id"), event: try stored.known("event"),
            subject: try stored.string(required: "subject_id"), status: try stored.known("status"),
            attempts: try stored.int(required: "attempts"), createdAt: try stored.date(required: "created_at"),
            nextAttemptAt: try stored.date("next_attempt_at"), lastAttemptAt: try stored.date("last_attempt_at"),
            lastStatusCode: try stored.int("last_status_code"), lastError: try stored.string("last_error"),
            deliveredAt: try stored.date("delivered_at"))
    }
}
