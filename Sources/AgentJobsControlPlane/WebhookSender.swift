import AgentJobsCore
import AgentJobsLifecycle
import AgentJobsStore
import AsyncHTTPClient
import CoreMetrics
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Sends webhook deliveries: the store's pending ones that are due, several at a time, each a signed
/// POST with a timeout; a delivery not answered with 2xx is tried again after a growing delay
/// (``WebhookRetry``) for up to a day. Runs in every control-plane process: claiming a delivery
/// leases it (``Store/claimWebhookDeliveries(now:lease:limit:)``), so replicas share the work and a
/// sender killed mid-request leaves its deliveries to be sent again once the lease is over. Receivers
/// may see a delivery twice (after such a crash); its id (`AgentJobs-Delivery`, the CloudEvents
/// `id`) tells them apart.
public struct WebhookSender: Service {
    public struct Configuration: Sendable {
        /// How long one request may take, connecting included (`AGENTJOBS_WEBHOOK_TIMEOUT_SECONDS`).
        public var requestTimeout: Duration = .seconds(10)
        /// Time between looks for due deliveries when there were none.
        public var interval: Duration = .milliseconds(500)
        /// Requests in flight at once: a receiver that never answers holds only its own.
        public var concurrency = 16
        /// The waits after each failed attempt (the last repeats).
        public var retryDelays: [Duration] = WebhookRetry.delays
        public init() {}

        /// How long a claimed delivery is left to its sender: the request's timeout and some margin.
        var lease: Duration { requestTimeout + .seconds(5) }
    }

    let store: any Store
    let configuration: Configuration
    let clock: @Sendable () -> Date
    let logger: Logger

    public init(
        store: any Store, configuration: Configuration = .init(), clock: @escaping @Sendable () -> Date = { Date() },
        logger: Logger
    ) {
        self.store = store
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        let client = Self.client(configuration)
        logger.info("webhook sender started")
        // Each delivery is a task of its own: a slot is refilled as soon as its request ends, so a
        // receiver that never answers holds only the slots of its own requests.
        let inFlight = InFlight()
        await withDiscardingTaskGroup { group in
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let free = configuration.concurrency - inFlight.count.withLock { $0 }
                var claimed: [WebhookSend] = []
                if free > 0 {
                    do {
                        // A claim waiting on a database that is down must not hold up a stop.
                        claimed = try await cancelWhenGracefulShutdown { [store, clock, configuration] in
                            try await store.claimWebhookDeliveries(
                                now: clock(), lease: configuration.lease, limit: free)
                        }
                    } catch  where Task.isShuttingDownGracefully || Task.isCancelled {
                        break
                    } catch {
                        logger.error("webhook pass failed; retrying", metadata: ["error": "\(error)"])
                    }
                }
                for item in claimed {
                    inFlight.count.withLock { $0 += 1 }
                    group.addTask {
                        await deliver(item, client: client)
                        inFlight.count.withLock { $0 -= 1 }
                    }
                }
                if claimed.isEmpty {
                    do {
                        try await cancelWhenGracefulShutdown { try await Task.sleep(for: configuration.interval) }
                    } catch {
                        break
                    }
                }
            }
            // Requests under way are abandoned: their leases run out and they are sent again.
            group.cancelAll()
        }
        try? await client.shutdown()
        logger.info("webhook sender stopped")
    }

    /// An HTTP client that follows no redirect (a receiver that answers 3xx has not taken the event,
    /// and the event is never sent to another host than the subscription names), with a connection
    /// per request in flight, to one host or many.
    static func client(_ configuration: Configuration) -> HTTPClient {
        var settings = HTTPClient.Configuration()
        settings.redirectConfiguration = .disallow
        settings.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.concurrency)
        settings.timeout.connect = .seconds(configuration.requestTimeout.components.seconds)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: settings)
    }

    /// Sends one attempt of a delivery and records how it went.
    func deliver(_ item: WebhookSend, client: HTTPClient) async {
        let result = await send(item, client: client)
        // Abandoned at a stop: nothing is recorded; the lease runs out and it is sent again.
        guard !Task.isCancelled else { return }
        do {
            try await store.recordWebhookAttempt(
                deliveryId: item.deliveryId, attempt: item.attempt, result: result, now: clock())
        } catch {
            // The lease runs out and the delivery is sent again: at least once.
            logger.warning(
                "could not record a webhook attempt",
                metadata: ["delivery_id": "\(item.deliveryId)", "error": "\(error)"])
        }
    }

    /// Sends one attempt of a delivery.
    func send(_ item: WebhookSend, client: HTTPClient) async -> WebhookAttemptResult {
        let now = clock()
        var request = HTTPClientRequest(url: item.url)
        request.method = .POST
        request.headers.add(
            name: "Content-Type",
            value: item.format == .cloudevents ? "application/cloudevents+json" : "application/json")
        request.headers.add(name: "User-Agent", value: "agentjobs-webhook/1")
        request.headers.add(name: "AgentJobs-Delivery", value: item.deliveryId)
        request.headers.add(
            name: WebhookSignature.header,
            value: WebhookSignature.value(
                secret: item.secret, timestamp: Int64(now.timeIntervalSince1970), body: item.body))
        request.body = .bytes(ByteBuffer(bytes: item.body))
        let outcome: (code: Int?, error: String)
        let started = ContinuousClock.now
        do {
            let timeout = TimeAmount.seconds(configuration.requestTimeout.components.seconds)
            let response = try await client.execute(request, timeout: timeout)
            let code = Int(response.status.code)
            // Decided by the status alone: the body of a 2xx is not read.
            if (200..<300).contains(code) {
                Self.count("delivered")
                return .delivered(statusCode: code)
            }
            // The client's timeout ends with the answer's head: the body gets what is left of it.
            let left = configuration.requestTimeout - (ContinuousClock.now - started)
            let excerpt = Self.excerpt(await Self.start(of: response.body, within: left))
            let redirect = (300..<400).contains(code) ? " (redirects are not followed)" : ""
            outcome = (code, "HTTP \(code)\(redirect)" + (excerpt.isEmpty ? "" : ": \(excerpt)"))
        } catch {
            // Abandoned at a stop: not an attempt that failed (the caller records nothing).
            if Task.isCancelled { return .failed(statusCode: nil, error: "canceled", nextAttemptAt: nil) }
            outcome = (nil, Self.describe(error, timeout: configuration.requestTimeout))
        }
        let next = WebhookRetry.nextAttempt(
            after: item.attempt, failedAt: clock(), createdAt: item.createdAt, delays: configuration.retryDelays)
        Self.count(next == nil ? "given_up" : "failed")
        logger.info(
            "webhook delivery failed",
            metadata: [
                "delivery_id": "\(item.deliveryId)", "attempt": "\(item.attempt)", "error": "\(outcome.error)",
                "next_attempt_at": "\(next.map(ISO8601.format) ?? "none: given up")",
            ])
        return .failed(statusCode: outcome.code, error: outcome.error, nextAttemptAt: next)
    }

    static func count(_ outcome: String) {
        Counter(label: "agentjobs_webhook_attempts_total", dimensions: [("outcome", outcome)]).increment()
    }

    /// The first kilobyte of a response body (the rest is not read), or what of it came `within`
    /// the time given; empty when it cannot be read.
    static func start(of body: HTTPClientResponse.Body, within limit: Duration) async -> [UInt8] {
        guard limit > .zero else { return [] }
        return ((try? await withTimeLimit(limit) { await start(of: body) }) ?? nil) ?? []
    }

    private static func start(of body: HTTPClientResponse.Body) async -> [UInt8] {
        var bytes: [UInt8] = []
        do {
            for try await chunk in body {
                bytes += chunk.readableBytesView.prefix(1024 - bytes.count)
                if bytes.count >= 1024 { break }
            }
        } catch {
            return bytes
        }
        return bytes
    }

    /// At most 200 characters of a response body, as text on one line.
    static func excerpt(_ body: [UInt8]) -> String {
        let text = String(decoding: body, as: UTF8.self)
        let line = String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : Character($0) })
        return String(line.trimmingWhitespace().prefix(200))
    }

    static func describe(_ error: any Error, timeout: Duration) -> String {
        if let client = error as? HTTPClientError {
            switch client {
            case .deadlineExceeded, .readTimeout, .connectTimeout:
                return "no answer within \(timeout.components.seconds) s"
            default: return "request failed: \(client)"
            }
        }
        return "request failed: \(error)"
    }
}

/// The requests a sender has under way, shared with the tasks that send them.
private final class InFlight: Sendable {
    let count = Mutex(0)
}
