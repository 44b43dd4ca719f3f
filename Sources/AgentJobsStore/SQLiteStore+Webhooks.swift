import AgentJobsCore
import AgentJobsSQLite

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// MARK: Webhooks

extension SQLiteStore {
    public func createWebhook(_ definition: WebhookDefinition, by actor: RunRequester?, now: Date) async throws -> (
        Webhook, secret: String
    ) {
        let (webhook, secret) = definition.subscription(createdAt: now)
        try await write { db in
            if let jobId = webhook.jobId, try db.query("SELECT 1 FROM jobs WHERE id = ?", [.text(jobId)]).isEmpty {
                throw ValidationError(field: "jobId", message: "no job with id '\(jobId)'")
            }
            try db.query(
                "INSERT INTO webhooks (id, url, events, job_id, format, secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    .text(webhook.id), .text(webhook.url), .text(WebhookEvent.storedForm(webhook.events)),
                    .optionalText(webhook.jobId), .text(webhook.format.rawValue), .text(secret), .date(now),
                ])
            try Self.appendAudit(.webhookCreated(webhook, actor: actor, at: now), db)
        }
        return (webhook, secret)
    }

    public func listWebhooks() async throws -> [Webhook] {
        try await read { db in try db.query(Self.webhookSelect + " ORDER BY seq").map(Self.webhook) }
    }

    public func webhook(id: String) async throws -> Webhook? {
        try await read { db in try db.query(Self.webhookSelect + " WHERE id = ?", [.text(id)]).first.map(Self.webhook) }
    }

    public func deleteWebhook(id: String, by actor: RunRequester?, now: Date) async throws {
        try await write { db in
            guard let url = try db.query("SELECT url FROM webhooks WHERE id = ?", [.text(id)]).first?.string("url")
            else { throw StoreError(.notFound, "no webhook with id \(id)") }
            try db.query("DELETE FROM webhook_deliveries WHERE webhook_id = ?", [.text(id)])
            try db.query("DELETE FROM webhooks WHERE id = ?", [.text(id)])
            try Self.appendAudit(
                AuditEntry(at: now, action: .webhookDeleted, actor: actor, targetId: id, targetName: url), db)
        }
    }

    public func listWebhookDeliveries(webhookId: String, cursor: String?, limit: Int) async throws
        -> WebhookDeliveryPage
    {
        var bindings: [SQLiteValue] = [.text(webhookId)]
        var sql = "SELECT * FROM webhook_deliveries WHERE webhook_id = ?"
        if let cursor {
            guard let sequence = PageCursor.decode(cursor) else { throw PageCursor.malformed }
            sql += " AND seq < ?"
            bindings.append(.integer(sequence))
        }
        sql += " ORDER BY seq DESC LIMIT ?"
        bindings.append(.int(max(0, limit) + 1))
        return try await read { [sql, bindings] db in
            let rows = try db.query(sql, bindings)
            let page = rows.prefix(max(0, limit))
            let next = rows.count > limit ? page.last?.int64("seq").map(PageCursor.encode) : nil
            return WebhookDeliveryPage(deliveries: try page.map(Self.delivery), nextCursor: next)
        }
    }

    public func claimWebhookDeliveries(now: Date, lease: Duration, limit: Int) async throws -> [WebhookSend] {
        // Most passes find nothing: a read first, so the single writer is not taken for that.
        let due = try await read { db in
            try !db.query(
                "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1",
                [.date(now)]
            ).isEmpty
        }
        guard due else { return [] }
        let until = now.addingTimeInterval(TimeInterval(lease.components.seconds))
        return try await write { db in
            let rows = try db.query(
                """
                SELECT d.id, d.body, d.attempts, d.created_at, w.url, w.secret, w.format
                FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND w.format IN ('cloudevents', 'slack')
                ORDER BY d.next_attempt_at LIMIT ?
                """, [.date(now), .int(limit)])
            return try rows.map { row in
                let stored = try StoredRow("webhook_deliveries", id: row.string("id"))
                let attempt = try stored.value(row.int("attempts"), "attempts") + 1
                try db.query(
                    "UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?, last_attempt_at = ? WHERE id = ?",
                    [.int(attempt), .date(until), .date(now), .text(stored.id)])
                return WebhookSend(
                    deliveryId: stored.id, url: try stored.value(row.string("url"), "url"),
                    secret: try stored.value(row.string("secret"), "secret"),
                    format: try stored.known(row.string("format"), "format"),
                    body: try stored.value(row.value(at: 1).bytes, "body"), attempt: attempt,
                    createdAt: try stored.value(row.date("created_at"), "created_at"))
            }
        }
    }

    public func recordWebhookAttempt(deliveryId: String, attempt: Int, result: WebhookAttemptResult, now: Date)
        async throws
    {
        try await write { db in
            switch result {
            case .delivered(let code):
                try db.query(
                    """
                    UPDATE webhook_deliveries SET status = 'delivered', delivered_at = ?, last_status_code = ?,
                        last_error = NULL, next_attempt_at = NULL
                    WHERE id = ? AND attempts = ? AND status = 'pending'
                    """, [.date(now), .int(code), .text(deliveryId), .int(attempt)])
            case .failed(let code, let error, let next):
                try db.query(
                    """
                    UPDATE webhook_deliveries SET status = ?, last_status_code = ?, last_error = ?, next_attempt_at = ?
                    WHERE id = ? AND attempts = ? AND status = 'pending'
                    """,
                    [
                        .text(next == nil ? WebhookDeliveryStatus.failed.rawValue : "pending"),
                        code.map { .int($0) } ?? .null, .text(error), .optionalDate(next), .text(deliveryId),
                        .int(attempt),
                    ])
            }
        }
    }

    public func deleteWebhookDeliveries(before cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            try db.execute(
                """
                DELETE FROM webhook_deliveries WHERE seq IN (
                    SELECT seq FROM webhook_deliveries
                    WHERE created_at < ? AND (status <> 'pending'
                        OR NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = webhook_id))
                    ORDER BY created_at LIMIT ?)
                """, [.date(cutoff), .int(max(0, limit))])
            return db.changes
        }
    }

    /// What the control plane does when a run ends, inside the transaction that records the end: its
    /// retry (``writeRetry(of:retryable:now:_:)``) and a delivery for each webhook that wants it.
    static func runEnded(
        _ run: Run, retryable: Bool, subscriptions: inout WebhookSubscriptions, now: Date, _ db: SQLiteConnection
    ) throws {
        try writeRetry(of: run, retryable: retryable, now: now, db)
        guard WebhookEvent(endOf: run.status) != nil else { return }
        try insert(NewWebhookDelivery.end(of: run, to: subscriptions.all(db), at: now), now: now, db)
    }

    /// Marks the hosts host tracking judged lost, and writes a `host.lost` delivery for each one
    /// not already marked (once per silence: a heartbeat clears the mark), inside the caller's
    /// transaction.
    static func hostsLost(
        _ lost: Set<String>, subscriptions: inout WebhookSubscriptions, now: Date, _ db: SQLiteConnection
    ) throws {
        for hostId in lost.sorted() {
            try db.query(
                "UPDATE hosts SET lost_at = ? WHERE id = ? AND lost_at IS NULL AND revoked_at IS NULL",
                [.date(now), .text(hostId)])
            guard db.changes == 1,
                let host = try db.query("SELECT * FROM hosts WHERE id = ?", [.text(hostId)]).first.map(Self.host)
            else { continue }
            try insert(NewWebhookDelivery.loss(of: host, to: subscriptions.all(db), at: now), now: now, db)
        }
    }

    private static func insert(_ deliveries: [NewWebhookDelivery], now: Date, _ db: SQLiteConnection) throws {
        for delivery in deliveries {
            try db.query(
                """
                INSERT INTO webhook_deliveries (id, webhook_id, event, subject_id, body, status, attempts, created_at,
                                                next_attempt_at)
                VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)
                """,
                [
                    .text(delivery.id), .text(delivery.webhookId), .text(delivery.event.rawValue),
                    .text(delivery.subjectId), .blob(delivery.body), .date(now), .date(now),
                ])
        }
    }

    static let webhookSelect = "SELECT id, url, events, job_id, format, created_at FROM webhooks"

    static func webhook(_ row: SQLiteRow) throws -> Webhook {
        let stored = try StoredRow("webhooks", id: row.string("id"))
        return Webhook(
            id: stored.id, url: try stored.value(row.string("url"), "url"),
            events: try stored.events(row.string("events"), "events"),
            jobId: row.string("job_id"), format: try stored.known(row.string("format"), "format"),
            createdAt: try stored.value(row.date("created_at"), "created_at"))
    }

    static func delivery(_ row: SQLiteRow) throws -> WebhookDelivery {
        let stored = try StoredRow("webhook_deliveries", id: row.string("id"))
        return WebhookDelivery(
            id: stored.id, webhookId: try stored.value(row.string("webhook_id"), "webhook_id"),
            event: try stored.known(row.string("event"), "event"),
            subject: try stored.value(row.string("subject_id"), "subject_id"),
            status: try stored.known(row.string("status"), "status"),
            attempts: try stored.value(row.int("attempts"), "attempts"),
            createdAt: try stored.value(row.date("created_at"), "created_at"),
            nextAttemptAt: row.date("next_attempt_at"), lastAttemptAt: row.date("last_attempt_at"),
            lastStatusCode: row.int("last_status_code"), lastError: row.string("last_error"),
            deliveredAt: row.date("delivered_at"))
    }
}

/// The webhook subscriptions, read at most once in a transaction, and only once something happened
/// that one may want.
struct WebhookSubscriptions {
    private var loaded: [Webhook]?

    /// A subscription this build cannot read (a later release's event or format) is passed over
    /// rather than failing the transaction that records what happened.
    mutating func all(_ db: SQLiteConnection) throws -> [Webhook] {
        if let loaded { return loaded }
        let read = try db.query(SQLiteStore.webhookSelect).compactMap { try? SQLiteStore.webhook($0) }
        loaded = read
        return read
    }
}
