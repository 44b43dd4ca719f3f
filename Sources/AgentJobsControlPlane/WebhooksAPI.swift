import AgentJobsCore
import AgentJobsStore
import Hummingbird

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension ControlPlaneAPI {
    /// Webhook subscriptions, admin only: they send run records to other systems and hold secrets.
    var webhookRoutes: [APIRoute] {
        [
            APIRoute(.post, "/api/v1/webhooks", .scope(.admin)) { request, context in
                let definition = try WebhookDefinition.parse(try await JSONResponse.requiredBody(of: request))
                let (webhook, secret) = try await store.createWebhook(
                    definition, by: context.principal?.requester, now: now)
                return try JSONResponse.make(
                    status: .created, CreatedWebhookResponse(webhook: WebhookResource(webhook), secret: secret))
            },
            APIRoute(.get, "/api/v1/webhooks", .scope(.admin)) { _, _ in
                try JSONResponse.make(["webhooks": try await store.listWebhooks().map(WebhookResource.init)])
            },
            APIRoute(.get, "/api/v1/webhooks/:id", .scope(.admin)) { _, context in
                let id = try context.parameters.require("id")
                guard let webhook = try await store.webhook(id: id) else {
                    throw StoreError(.notFound, "no webhook with id \(id)")
                }
                return try JSONResponse.make(WebhookResource(webhook))
            },
            APIRoute(.delete, "/api/v1/webhooks/:id", .scope(.admin)) { _, context in
                try await store.deleteWebhook(
                    id: try context.parameters.require("id"), by: context.principal?.requester, now: now)
                return Response(status: .noContent)
            },
            APIRoute(.get, "/api/v1/webhooks/:id/deliveries", .scope(.admin)) { request, context in
                let query = try QueryReader(request, allowed: ["cursor", "limit"])
                let id = try context.parameters.require("id")
                guard try await store.webhook(id: id) != nil else {
                    throw StoreError(.notFound, "no webhook with id \(id)")
                }
                let limit = try Self.limit(query.value("limit"), default: Self.defaultPageSize, max: Self.maxPageSize)
                let page = try await store.listWebhookDeliveries(
                    webhookId: id, cursor: try query.string("cursor"), limit: limit)
                return try JSONResponse.make(
                    DeliveryPageResponse(
                        deliveries: page.deliveries.map(DeliveryResource.init), nextCursor: page.nextCursor))
            },
        ]
    }
}

/// A webhook subscription as the API shows it (never its secret).
struct WebhookResource: Encodable {
    var webhook: Webhook

    init(_ webhook: Webhook) { self.webhook = webhook }

    enum CodingKeys: String, CodingKey { case id, url, events, jobId, format, createdAt }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(webhook.id, forKey: .id)
        try container.encode(webhook.url, forKey: .url)
        try container.encode(webhook.events, forKey: .events)
        try container.encode(webhook.jobId, forKey: .jobId)
        try container.encode(webhook.format, forKey: .format)
        try container.encode(webhook.createdAt, forKey: .createdAt)
    }
}

/// A new subscription with its secret, shown this once.
struct CreatedWebhookResponse: Encodable {
    var webhook: WebhookResource
    var secret: String
}

/// One delivery as the API shows it: its attempts and the last answer.
struct DeliveryResource: Encodable {
    var delivery: WebhookDelivery

    init(_ delivery: WebhookDelivery) { self.delivery = delivery }

    enum CodingKeys: String, CodingKey {
        case id, event, subject, status, attempts, createdAt, nextAttemptAt, lastAttemptAt, lastStatusCode, lastError
        case deliveredAt
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(delivery.id, forKey: .id)
        try container.encode(delivery.event, forKey: .event)
        try container.encode(delivery.subject, forKey: .subject)
        try container.encode(delivery.status, forKey: .status)
        try container.encode(delivery.attempts, forKey: .attempts)
        try container.encode(delivery.createdAt, forKey: .createdAt)
        try container.encode(delivery.nextAttemptAt, forKey: .nextAttemptAt)
        try container.encode(delivery.lastAttemptAt, forKey: .lastAttemptAt)
        try container.encode(delivery.lastStatusCode, forKey: .lastStatusCode)
        try container.encode(delivery.lastError, forKey: .lastError)
        try container.encode(delivery.deliveredAt, forKey: .deliveredAt)
    }
}

struct DeliveryPageResponse: Encodable {
    var deliveries: [DeliveryResource]
    var nextCursor: String?

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(deliveries, forKey: .deliveries)
        try container.encode(nextCursor, forKey: .nextCursor)
    }

    enum CodingKeys: String, CodingKey { case deliveries, nextCursor }
}
