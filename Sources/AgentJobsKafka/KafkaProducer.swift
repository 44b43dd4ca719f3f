import AgentJobsCore
import CRdKafka
import Logging
import ServiceLifecycle
import Synchronization

/// An idempotent Kafka producer (`enable.idempotence=true`, `acks=all`, Java-compatible murmur2
/// partitioning) whose sends return after the broker acknowledged the message.
///
/// It is a `Service`: add it to the `ServiceGroup` *before* the services that send through it,
/// so that it shuts down after them. `run()` polls librdkafka on a dedicated thread until
/// graceful shutdown or cancellation, then flushes in-flight messages (up to
/// ``KafkaProducerConfiguration/shutdownFlushTimeout``), fails what is left with
/// ``KafkaError/Code/producerShutDown`` and destroys the handle.
///
/// Sends made before `run()` starts are queued and complete once it runs. Many concurrent
/// sends (or one ``sendBatch(_:)``) are batched by librdkafka.
///
/// Recovery: after a delivery timeout, or a fatal error of librdkafka's idempotent producer, the
/// librdkafka handle is replaced by a new one (and so gets a new producer id) once no message is
/// in flight. After a timeout librdkafka otherwise only bumps its epoch locally, which a broker
/// that lost its producer state (a restarted in-memory Tansu, say) rejects forever with
/// `UNKNOWN_PRODUCER_ID`; after a fatal error (a retried send that met `UNKNOWN_PRODUCER_ID`) the
/// handle refuses every send. Until the replacement, sends fail with the fatal error and messages
/// still queued are failed; all of them were reported as failed, so no guarantee changes: the
/// caller retries them.
public final class KafkaProducer: MessageProducer, Service, Sendable {
    private let configuration: KafkaProducerConfiguration
    private let logger: Logger
    private let properties: [String: String]
    private let callbacks: RDKafkaCallbacks
    private let shared: ProducerShared

    /// Creates the producer and its librdkafka handle (no network I/O until `run()`).
    /// - Parameters:
    ///   - configuration: The producer configuration; validated here.
    ///   - logger: Receives lifecycle and librdkafka log lines.
    /// - Throws: ``KafkaError`` (`invalidConfiguration`, `unsupportedLibrdkafkaVersion`,
    ///   `clientCreationFailed`).
    public init(configuration: KafkaProducerConfiguration, logger: Logger) throws(KafkaError) {
        let properties = try configuration.librdkafkaProperties()
        let stopPolling = OneWayFlag()
        // The callbacks need the shared state, which needs the first handle, which needs the
        // callbacks: the state is reached through a box filled right after.
        let box = SharedBox()
        let callbacks = RDKafkaCallbacks(
            logger: logger,
            onDelivery: { id, result in
                let timedOut = if case .failure(let error) = result { error.code == .deliveryTimedOut } else { false }
                // Resume the waiting send outside the lock.
                box.shared?.state.withLock { $0.machine.delivered(id: id, timedOut: timedOut) }?.complete(result)
            },
            onError: { error, fatal in
                if fatal {
                    // The handle is beyond repair, the producer is not: the poll loop replaces the
                    // handle (a new producer id) and sends work again. Stopping the role instead
                    // would turn a broker that lost its state into an outage of every role.
                    logger.error("Kafka producer hit a fatal error; replacing its handle: \(error)")
                    box.shared?.state.withLock { $0.machine.fatal(error) }
                } else {
                    // Transient (broker down, …): librdkafka retries; sends fail on their timeout.
                    logger.warning("Kafka producer error: \(error)")
                }
            }
        )
        let client = try RDKafkaClient.make(kind: .producer, properties: properties, callbacks: callbacks)
        let shared = ProducerShared(client: client, stopPolling: stopPolling)
        box.shared = shared
        self.configuration = configuration
        self.logger = logger
        self.properties = properties
        self.callbacks = callbacks
        self.shared = shared
    }

    /// Whether a broker answers, for readiness: nil when one answered a metadata request within
    /// `timeout`, else why not. The default stays under the readiness deadline (2 s), so that a slow
    /// broker is reported with librdkafka's reason rather than as no answer.
    public func checkBroker(timeout: Duration = .milliseconds(1500)) async -> String? {
        let client = shared.state.withLock { $0.client }
        let timeoutMs = Int32(clamping: timeout.wholeMilliseconds ?? 2000)
        return await Blocking.onDedicatedThread(name: "agentjobs-kafka-readiness") {
            client.ifAlive { client.checkBroker(timeoutMs: timeoutMs) } ?? "the Kafka producer is closed"
        }
    }

    /// Makes the current handle raise a fatal error, as a broker that lost the producer's state
    /// would. For tests.
    func raiseFatalErrorForTesting() {
        let client = shared.state.withLock { $0.client }
        _ = client.ifAlive { client.raiseFatalErrorForTesting(reason: "test: unknown producer id") }
    }

    /// Polls librdkafka until graceful shutdown or cancellation, then flushes and closes.
    /// - Throws: ``KafkaError`` with code `alreadyRunning` on a second call, or `fatal` when
    ///   librdkafka raised a fatal error that shutdown came before the handle's replacement.
    public func run() async throws {
        try shared.state.withLock { $0.machine.start() }.get()
        logger.info(
            "Kafka producer starting",
            metadata: [
                "librdkafka.version": "\(KafkaRuntime.librdkafkaVersion)",
                "kafka.bootstrap": "\(configuration.client.bootstrapServers.joined(separator: ","))",
            ]
        )
        let shared = self.shared
        let properties = self.properties
        let callbacks = self.callbacks
        let logger = self.logger
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await Blocking.onDedicatedThread(name: "agentjobs-kafka-producer") {
                    while !shared.stopPolling.isSet {
                        let client = shared.state.withLock { $0.client }
                        client.poll(timeoutMs: 100)
                        replaceHandleIfWanted(
                            shared: shared, properties: properties, callbacks: callbacks, logger: logger)
                    }
                }
            } onGracefulShutdown: {
                shared.stopPolling.set()
            }
        } onCancel: {
            shared.stopPolling.set()
        }

        _ = shared.state.withLock { $0.machine.beginShutdown() }
        let client = shared.state.withLock { $0.client }
        let flushMs = Int32(clamping: configuration.shutdownFlushTimeout.wholeMilliseconds ?? 0)
        await Blocking.onDedicatedThread(name: "agentjobs-kafka-producer-flush") {
            if !client.flush(timeoutMs: flushMs) {
                logger.warning(
                    "Kafka producer flush deadline passed; failing undelivered messages",
                    metadata: ["kafka.undelivered": "\(client.outQueueLength)"]
                )
                client.purgeAndServe()
            }
        }
        let leftovers = shared.state.withLock { $0.machine.finish() }
        for sink in leftovers {
            sink.complete(
                .failure(
                    KafkaError(
                        code: .producerShutDown, message: "the producer shut down before the message was acknowledged"))
            )
        }
        await Blocking.onDedicatedThread(name: "agentjobs-kafka-producer-destroy") {
            client.destroy()
        }
        logger.info("Kafka producer stopped")
        if let fatal = shared.state.withLock({ $0.machine.fatalError }) {
            throw fatal
        }
    }

    /// Publishes one message and returns after the broker acknowledged it (`acks=all`).
    /// - Parameter message: The message.
    /// - Returns: Its partition and offset.
    /// - Throws: ``KafkaError``: `deliveryTimedOut` (not acknowledged within
    ///   ``KafkaProducerConfiguration/deliveryTimeout``), `deliveryFailed`, `producerShutDown`,
    ///   `fatal`. Cancelling the calling task does not withdraw a message already handed to
    ///   librdkafka; the call still returns within the delivery timeout.
    public func send(_ message: OutgoingMessage) async throws -> MessagePosition {
        try await deliver([message])[0].get()
    }

    /// Publishes messages together and returns one result per message, in order, once each was
    /// acknowledged or failed. Messages are enqueued in order, so per-key order holds.
    /// - Parameter messages: The messages.
    /// - Returns: Per message: its position or its ``KafkaError``.
    public func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
        await enqueueBatch(messages).results()
    }

    /// Enqueues messages in librdkafka's queue, in order, and returns without waiting for their
    /// delivery reports. A later batch is enqueued after these, and the idempotent producer keeps
    /// that order per partition across its retries.
    /// - Parameter messages: The messages.
    /// - Returns: The delivery results to come, per message: its position or its ``KafkaError``.
    public func enqueueBatch(_ messages: [OutgoingMessage]) async -> PendingDelivery {
        let batch = await enqueueAll(messages)
        return PendingDelivery { await batch.wait().map { $0.mapError { $0 as any Error } } }
    }

    /// ``sendBatch(_:)`` with the concrete error type.
    public func deliver(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, KafkaError>] {
        guard !messages.isEmpty else { return [] }
        return await enqueueAll(messages).wait()
    }

    /// Enqueues every message (each fails on its own when librdkafka refuses it or its queue stays
    /// full for the delivery timeout) and returns the batch its delivery reports complete.
    private func enqueueAll(_ messages: [OutgoingMessage]) async -> DeliveryBatch {
        let batch = DeliveryBatch(count: messages.count)
        let timeout = configuration.deliveryTimeout
        var progress = EnqueueProgress()
        // When the queue is full, the message that found it full waits for deliveries to make room
        // (later messages wait behind it, which keeps per-key order), up to the delivery timeout.
        var fullSince: (index: Int, deadline: ContinuousClock.Instant)?
        while progress.next < messages.count {
            let failures = enqueue(messages, progress: &progress, batch: batch)
            for (sink, error) in failures { sink.complete(.failure(error)) }
            guard progress.queueFull else { continue }
            let index = progress.next
            let deadline =
                fullSince.flatMap { $0.index == index ? $0.deadline : nil } ?? ContinuousClock.now + timeout
            fullSince = (index, deadline)
            if ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(5))
            } else {
                DeliverySink(batch: batch, index: index).complete(
                    .failure(
                        KafkaError(
                            code: .deliveryTimedOut,
                            message: "librdkafka's local queue stayed full for the whole delivery timeout",
                            librdkafkaError: .init(RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        )))
                progress.next += 1
            }
        }
        return batch
    }

    /// How far ``enqueueAll(_:)`` got.
    private struct EnqueueProgress {
        /// The next message to enqueue.
        var next = 0
        /// Whether `next` found librdkafka's queue full.
        var queueFull = false
        /// The last topic name found legal (a batch mostly goes to one topic).
        var legalTopic: String?
    }

    /// Messages enqueued per lock acquisition: the delivery reports take the same lock, so one per
    /// message made the two threads contend for it thousands of times per batch.
    private static let enqueueChunk = 256

    /// Enqueues up to ``enqueueChunk`` messages from `progress.next` under one acquisition of the
    /// lock (`rd_kafka_producev` does not block), stopping early at a full queue.
    /// - Returns: The messages that failed at once, to complete outside the lock.
    private func enqueue(
        _ messages: [OutgoingMessage], progress: inout EnqueueProgress, batch: DeliveryBatch
    ) -> [(DeliverySink, KafkaError)] {
        var failures: [(DeliverySink, KafkaError)] = []
        progress.queueFull = false
        let end = min(progress.next + Self.enqueueChunk, messages.count)
        shared.state.withLock { state in
            // This is what guarantees that no message is enqueued after shutdown finished and the
            // handle was destroyed.
            while progress.next < end {
                let message = messages[progress.next]
                let sink = DeliverySink(batch: batch, index: progress.next)
                if message.topic != progress.legalTopic {
                    do throws(KafkaError) {
                        try validateTopicName(message.topic)
                        progress.legalTopic = message.topic
                    } catch {
                        failures.append((sink, KafkaError(code: .deliveryFailed, message: error.message)))
                        progress.next += 1
                        continue
                    }
                }
                switch state.machine.register(sink) {
                case .fail(let error):
                    failures.append((sink, error))
                case .produce(let id):
                    let error = state.client.produce(message, opaque: id)
                    if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                        _ = state.machine.enqueueFailed(id: id)
                        if error == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                            progress.queueFull = true
                            return
                        }
                        if error == RD_KAFKA_RESP_ERR__FATAL {
                            // Raised before its error callback was served: the same as the callback.
                            let fatal = KafkaError(
                                code: .fatal,
                                message: "the Kafka producer hit a fatal error; its handle is being replaced",
                                librdkafkaError: .init(error))
                            state.machine.fatal(fatal)
                            failures.append((sink, fatal))
                            progress.next += 1
                            continue
                        }
                        failures.append(
                            (
                                sink,
                                KafkaError(
                                    code: .deliveryFailed,
                                    message: "librdkafka refused to enqueue a message to '\(message.topic)'",
                                    librdkafkaError: .init(error)
                                )
                            ))
                    }
                }
                progress.next += 1
            }
        }
        return failures
    }
}

/// Replaces the librdkafka handle when the state machine wants it and nothing is in flight.
/// Runs on the poll thread, between polls.
private func replaceHandleIfWanted(
    shared: ProducerShared,
    properties: [String: String],
    callbacks: RDKafkaCallbacks,
    logger: Logger
) {
    let (wanted, purgeFirst) = shared.state.withLock { state -> (RDKafkaClient?, Bool) in
        if state.machine.shouldReplaceHandle { return (state.client, false) }
        if state.machine.shouldPurgeBeforeReplacing { return (state.client, true) }
        return (nil, false)
    }
    guard let current = wanted else { return }
    if purgeFirst {
        // After a fatal error the queued messages are never sent: fail them now (through their
        // delivery reports, so each waiting send hears of it and its caller retries). Those in
        // flight report their real outcome, within the delivery timeout; the handle is replaced
        // after the last one.
        current.purgeQueueAndServe()
        guard shared.state.withLock({ $0.machine.shouldReplaceHandle }) else { return }
    }
    // Delivery reports still queued in the old handle must be served first.
    guard current.outQueueLength == 0 else { return }
    let fresh: RDKafkaClient
    do {
        fresh = try RDKafkaClient.make(kind: .producer, properties: properties, callbacks: callbacks)
    } catch {
        logger.error("could not create a replacement Kafka producer handle: \(error)")
        shared.state.withLock { $0.machine.replacementFailed() }
        return
    }
    // Swap only if still idle: a send may have enqueued on the old handle meanwhile.
    let old = shared.state.withLock { state -> RDKafkaClient? in
        guard state.machine.shouldReplaceHandle, state.client === current else { return nil }
        state.client = fresh
        state.machine.handleReplaced()
        return current
    }
    if let old {
        old.destroy()
        logger.notice("replaced the Kafka producer handle after a delivery timeout or a fatal error (new producer id)")
    } else {
        fresh.destroy()
    }
}

/// State shared between the producer, its poll thread and librdkafka's callbacks: the state
/// machine and the current librdkafka handle, under one lock.
final class ProducerShared: Sendable {
    struct Locked {
        var machine = ProducerStateMachine<DeliverySink>()
        var client: RDKafkaClient
    }

    let state: Mutex<Locked>
    let stopPolling: OneWayFlag

    init(client: RDKafkaClient, stopPolling: OneWayFlag) {
        state = Mutex(Locked(client: client))
        self.stopPolling = stopPolling
    }
}

/// Lets librdkafka's callbacks reach the shared state created after them. Weak, because the
/// shared state owns the handle that owns the callbacks: a producer dropped without `run()`
/// still releases (and destroys) its handle.
final class SharedBox: Sendable {
    private struct WeakReference {
        weak var shared: ProducerShared?
    }

    private let value = Mutex(WeakReference())

    var shared: ProducerShared? {
        get { value.withLock { $0.shared } }
        set { value.withLock { $0.shared = newValue } }
    }
}

/// Where the delivery report of one message goes: a slot of a ``DeliveryBatch``.
struct DeliverySink: Sendable {
    let batch: DeliveryBatch
    let index: Int

    func complete(_ result: Result<MessagePosition, KafkaError>) {
        batch.complete(index: index, with: result)
    }
}

/// Collects the delivery results of one send or batch and resumes the waiting task once all
/// arrived.
final class DeliveryBatch: Sendable {
    private struct State {
        var results: [Result<MessagePosition, KafkaError>?]
        var remaining: Int
        var continuation: CheckedContinuation<Void, Never>?
    }

    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count, continuation: nil))
    }

    func complete(index: Int, with result: Result<MessagePosition, KafkaError>) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.results[index] == nil else { return nil }
            state.results[index] = result
            state.remaining -= 1
            guard state.remaining == 0 else { return nil }
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }

    func wait() async -> [Result<MessagePosition, KafkaError>] {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.remaining == 0 { return true }
                state.continuation = continuation
                return false
            }
            if done { continuation.resume() }
        }
        return state.withLock { state in
            state.results.map { $0 ?? .failure(KafkaError(code: .deliveryFailed, message: "missing delivery result")) }
        }
    }
}
