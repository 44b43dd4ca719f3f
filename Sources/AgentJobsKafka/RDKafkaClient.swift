import AgentJobsCore
import CRdKafka
import Foundation
import Logging
import Synchronization

/// What librdkafka's rebalance callback reported, in Swift values.
enum RebalanceEvent: Sendable, Equatable {
    /// The group gave us these partitions (all of them for the eager protocol, the additions
    /// for the cooperative one).
    case assigned([TopicPartition])
    /// These partitions were taken away (`lost` when it happened without a clean hand-over).
    case revoked([TopicPartition], lost: Bool)
}

/// One result of `rd_kafka_consumer_poll`.
enum ConsumerPollResult: Sendable {
    case message(IncomingMessage)
    case error(KafkaError, fatal: Bool)
}

/// The Swift closures that librdkafka's C callbacks call. Immutable once the handle exists.
final class RDKafkaCallbacks: Sendable {
    let logger: Logger
    /// Delivery report: the per-message opaque and the outcome. Called on the polling thread.
    let onDelivery: (@Sendable (UInt64, Result<MessagePosition, KafkaError>) -> Void)?
    /// Group rebalance, called on the polling thread before partitions are (un)assigned.
    let onRebalance: (@Sendable (RebalanceEvent) -> Void)?
    /// Client-level error (`fatal` means the handle is unusable). Called on the polling thread.
    let onError: (@Sendable (KafkaError, _ fatal: Bool) -> Void)?

    init(
        logger: Logger,
        onDelivery: (@Sendable (UInt64, Result<MessagePosition, KafkaError>) -> Void)? = nil,
        onRebalance: (@Sendable (RebalanceEvent) -> Void)? = nil,
        onError: (@Sendable (KafkaError, _ fatal: Bool) -> Void)? = nil
    ) {
        self.logger = logger
        self.onDelivery = onDelivery
        self.onRebalance = onRebalance
        self.onError = onError
    }
}

/// The one type that owns `rd_kafka_*` handles. Every C call of the package goes through it.
///
/// librdkafka handles are thread-safe; this type adds no locking of its own except around
/// destruction. Blocking methods (`poll`, `flush`, `commit`, `close`, admin requests) must be
/// called from a dedicated thread or dispatch queue, never from the cooperative pool.
final class RDKafkaClient: @unchecked Sendable {
    enum Kind: Sendable {
        case producer
        case consumer(groupRebalanceCallback: Bool)
        case admin
    }

    let kind: Kind
    private let handle: OpaquePointer
    private let callbacksPointer: UnsafeMutableRawPointer
    private let destroyed = Mutex(false)
    let logger: Logger

    private init(kind: Kind, handle: OpaquePointer, callbacksPointer: UnsafeMutableRawPointer, logger: Logger) {
        self.kind = kind
        self.handle = handle
        self.callbacksPointer = callbacksPointer
        self.logger = logger
    }

    deinit {
        destroy()
    }

    /// Creates a librdkafka handle from a complete property set.
    /// - Throws: ``KafkaError`` (`unsupportedLibrdkafkaVersion`, `invalidConfiguration`,
    ///   `clientCreationFailed`). Messages never include values of secret properties.
    static func make(
        kind: Kind,
        properties: [String: String],
        callbacks: RDKafkaCallbacks
    ) throws(KafkaError) -> RDKafkaClient {
        try KafkaRuntime.checkVersion()
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError(code: .clientCreationFailed, message: "rd_kafka_conf_new failed")
        }
        var errorBuffer = [CChar](repeating: 0, count: 512)
        for key in properties.keys.sorted() {
            let value = properties[key, default: ""]
            let result = rd_kafka_conf_set(conf, key, value, &errorBuffer, errorBuffer.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let detail =
                    KafkaClientConfiguration.isSensitive(key)
                    ? "invalid value for property '\(key)' (value not shown)"
                    : cString(errorBuffer)
                throw KafkaError(
                    code: .invalidConfiguration, message: "librdkafka rejected the configuration: \(detail)")
            }
        }

        let callbacksPointer = Unmanaged.passRetained(callbacks).toOpaque()
        rd_kafka_conf_set_opaque(conf, callbacksPointer)
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, buffer in
            guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
            let callbacks = Unmanaged<RDKafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
            let text = buffer.map { String(cString: $0) } ?? ""
            let facilityText = facility.map { String(cString: $0) } ?? ""
            callbacks.logger.log(
                level: Logger.Level(syslogLevel: level),
                "librdkafka: \(text)",
                metadata: ["librdkafka.facility": "\(facilityText)"]
            )
        }
        // Without an error callback librdkafka logs errors itself (through the log callback);
        // the admin client uses that, as it never polls its main queue.
        if callbacks.onError != nil {
            setErrorCallback(conf)
        }

        let type: rd_kafka_type_t
        switch kind {
        case .producer:
            type = RD_KAFKA_PRODUCER
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
                guard let opaque, let message else { return }
                let callbacks = Unmanaged<RDKafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
                let id = UInt64(UInt(bitPattern: message.pointee._private))
                callbacks.onDelivery?(id, deliveryResult(message))
            }
        case .consumer(let groupRebalanceCallback):
            type = RD_KAFKA_CONSUMER
            if groupRebalanceCallback {
                rd_kafka_conf_set_rebalance_cb(conf) { rk, error, partitions, opaque in
                    guard let rk, let opaque else { return }
                    let callbacks = Unmanaged<RDKafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
                    handleRebalance(rk: rk, error: error, partitions: partitions, callbacks: callbacks)
                }
            }
        case .admin:
            type = RD_KAFKA_PRODUCER
        }

        guard let handle = rd_kafka_new(type, conf, &errorBuffer, errorBuffer.count) else {
            // On failure the configuration is still ours to free.
            rd_kafka_conf_destroy(conf)
            Unmanaged<RDKafkaCallbacks>.fromOpaque(callbacksPointer).release()
            throw KafkaError(
                code: .clientCreationFailed, message: "librdkafka could not create a client: \(cString(errorBuffer))")
        }
        if case .consumer = kind {
            // Route the main queue (errors, logs, rebalances) to rd_kafka_consumer_poll.
            rd_kafka_poll_set_consumer(handle)
        }
        return RDKafkaClient(kind: kind, handle: handle, callbacksPointer: callbacksPointer, logger: callbacks.logger)
    }

    /// Destroys the handle (blocking; idempotent). For a consumer, call ``closeConsumer()`` first.
    func destroy() {
        let alreadyDestroyed = destroyed.withLock { destroyed in
            defer { destroyed = true }
            return destroyed
        }
        guard !alreadyDestroyed else { return }
        rd_kafka_destroy(handle)
        Unmanaged<RDKafkaCallbacks>.fromOpaque(callbacksPointer).release()
    }

    // MARK: Producer

    /// Enqueues a message (non-blocking). `opaque` comes back in the delivery report.
    /// - Returns: `RD_KAFKA_RESP_ERR_NO_ERROR` or the reason it was not enqueued (e.g.
    ///   `_QUEUE_FULL`); on error no delivery report follows.
    func produce(_ message: OutgoingMessage, opaque: UInt64) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer?
        if !message.headers.isEmpty {
            headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                if let value = header.value {
                    value.withUnsafeBytes { bytes in
                        _ = rd_kafka_header_add(headers, header.key, -1, bytes.baseAddress, bytes.count)
                    }
                } else {
                    _ = rd_kafka_header_add(headers, header.key, -1, nil, 0)
                }
            }
        }
        let msgOpaque = UnsafeMutableRawPointer(bitPattern: UInt(opaque))
        // An empty value is sent as an empty (not null) payload: null is a compaction tombstone.
        let empty: [UInt8] = [0]
        let error = message.topic.withCString { topic in
            withBytes(message.key) { key, keyLength in
                (message.value.isEmpty ? empty : message.value).withUnsafeBytes { value in
                    agentjobs_rd_kafka_produce(
                        handle, topic, AGENTJOBS_RD_KAFKA_PARTITION_UA,
                        key, keyLength,
                        value.baseAddress, message.value.count,
                        headers, msgOpaque
                    )
                }
            }
        }
        if error != RD_KAFKA_RESP_ERR_NO_ERROR, let headers {
            // librdkafka owns the headers only when produce succeeded.
            rd_kafka_headers_destroy(headers)
        }
        return error
    }

    /// Serves queued callbacks (delivery reports, errors) for up to `timeoutMs`. Blocking.
    @discardableResult
    func poll(timeoutMs: Int32) -> Int32 {
        rd_kafka_poll(handle, timeoutMs)
    }

    /// Waits up to `timeoutMs` for every queued message to be delivered or failed, serving
    /// delivery reports. Blocking. Returns whether nothing is left.
    func flush(timeoutMs: Int32) -> Bool {
        rd_kafka_flush(handle, timeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Fails every queued and in-flight message (their delivery reports carry `_PURGE_*`), then
    /// serves those reports. Blocking.
    func purgeAndServe() {
        _ = rd_kafka_purge(handle, AGENTJOBS_RD_KAFKA_PURGE_ALL)
        for _ in 0..<50 where rd_kafka_outq_len(handle) > 0 {
            rd_kafka_poll(handle, 10)
        }
        rd_kafka_poll(handle, 0)
    }

    /// Messages and requests not yet delivered.
    var outQueueLength: Int32 {
        rd_kafka_outq_len(handle)
    }

    // MARK: Consumer

    /// Joins the consumer group and subscribes to `topics`.
    func subscribe(topics: [String]) throws(KafkaError) {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics {
            rd_kafka_topic_partition_list_add(list, topic, AGENTJOBS_RD_KAFKA_PARTITION_UA)
        }
        let error = rd_kafka_subscribe(handle, list)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(
                code: .subscriptionFailed, message: "subscribing to \(topics) failed", librdkafkaError: .init(error))
        }
    }

    /// Reads `partitions` without group membership, each from its committed offset (falling
    /// back to `auto.offset.reset`).
    func assign(_ partitions: [TopicPartition]) throws(KafkaError) {
        let list = makeList(partitions.map { ($0, AGENTJOBS_RD_KAFKA_OFFSET_STORED) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let error = rd_kafka_assign(handle, list)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(
                code: .subscriptionFailed, message: "assigning \(partitions) failed", librdkafkaError: .init(error))
        }
    }

    /// Waits up to `timeoutMs` for the next message or error, serving callbacks. Blocking.
    func consumerPoll(timeoutMs: Int32) -> ConsumerPollResult? {
        guard let message = rd_kafka_consumer_poll(handle, timeoutMs) else { return nil }
        defer { rd_kafka_message_destroy(message) }
        let error = message.pointee.err
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            if error == RD_KAFKA_RESP_ERR__FATAL {
                var buffer = [CChar](repeating: 0, count: 512)
                let underlying = rd_kafka_fatal_error(handle, &buffer, buffer.count)
                return .error(
                    KafkaError(code: .fatal, message: cString(buffer), librdkafkaError: .init(underlying)), fatal: true)
            }
            let text = rd_kafka_message_errstr(message).map { String(cString: $0) } ?? ""
            return .error(
                KafkaError(
                    code: .clientError, message: "consumer error: \(text)", librdkafkaError: .init(error)),
                fatal: false)
        }
        return .message(incomingMessage(message))
    }

    /// Commits `offsets` (the *next* offset to read, i.e. last handled + 1) synchronously.
    /// Blocking; call from the commit queue.
    func commit(_ offsets: [TopicPartition: Int64]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = makeList(offsets.map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let error = rd_kafka_commit(handle, list, 0)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(
                code: .commitFailed, message: "committing \(offsets.count) partition offsets failed",
                librdkafkaError: .init(error))
        }
        let count = Int(list.pointee.cnt)
        for index in 0..<count {
            let element = list.pointee.elems[index]
            if element.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                let name = element.topic.map { String(cString: $0) } ?? "?"
                throw KafkaError(
                    code: .commitFailed,
                    message: "committing the offset of \(name)[\(element.partition)] failed",
                    librdkafkaError: .init(element.err)
                )
            }
        }
    }

    /// Leaves the group (serving the final revoke) and stops fetching. Blocking.
    func closeConsumer() throws(KafkaError) {
        let error = rd_kafka_consumer_close(handle)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(
                code: .consumerClosed, message: "closing the consumer failed", librdkafkaError: .init(error))
        }
    }

    // MARK: Admin

    /// Creates topics and returns, per topic name, `nil` or its error (already existing topics
    /// count as success). Blocking.
    func createTopics(_ topics: [KafkaTopicSpecification], timeoutMs: Int32) throws(KafkaError) -> [String: KafkaError]
    {
        var newTopics: [OpaquePointer?] = []
        defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
        var errorBuffer = [CChar](repeating: 0, count: 512)
        for spec in topics {
            guard
                let newTopic = rd_kafka_NewTopic_new(
                    spec.name, spec.partitionCount, spec.replicationFactor, &errorBuffer, errorBuffer.count)
            else {
                throw KafkaError(code: .topicCreationFailed, message: "topic '\(spec.name)': \(cString(errorBuffer))")
            }
            newTopics.append(newTopic)
            for key in spec.configuration.keys.sorted() {
                let error = rd_kafka_NewTopic_set_config(newTopic, key, spec.configuration[key, default: ""])
                if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                    throw KafkaError(
                        code: .topicCreationFailed, message: "topic '\(spec.name)': bad config '\(key)'",
                        librdkafkaError: .init(error))
                }
            }
        }
        let queue = rd_kafka_queue_new(handle)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &errorBuffer, errorBuffer.count)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMs, &errorBuffer, errorBuffer.count)
        newTopics.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(handle, buffer.baseAddress, buffer.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, timeoutMs &+ 5_000) else {
            throw KafkaError(code: .timedOut, message: "creating topics timed out after \(timeoutMs) ms")
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        if eventError != RD_KAFKA_RESP_ERR_NO_ERROR {
            let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
            throw KafkaError(
                code: .topicCreationFailed, message: "creating topics failed: \(text)",
                librdkafkaError: .init(eventError))
        }
        guard let result = rd_kafka_event_CreateTopics_result(event) else {
            throw KafkaError(code: .topicCreationFailed, message: "unexpected admin result event")
        }
        var count = 0
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return [:] }
        var failures: [String: KafkaError] = [:]
        for index in 0..<count {
            let topicResult = results[index]
            let error = rd_kafka_topic_result_error(topicResult)
            let name = rd_kafka_topic_result_name(topicResult).map { String(cString: $0) } ?? "?"
            if error == RD_KAFKA_RESP_ERR_NO_ERROR || error == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                continue
            }
            let text = rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) } ?? ""
            failures[name] = KafkaError(
                code: .topicCreationFailed, message: "creating topic '\(name)' failed: \(text)",
                librdkafkaError: .init(error))
        }
        return failures
    }

    /// The partition count of `topic` from cluster metadata, or `nil` when the broker does not
    /// know the topic. Asks for all topics so that the query can never auto-create one. Blocking.
    func partitionCount(topic: String, timeoutMs: Int32) throws(KafkaError) -> Int32? {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let error = rd_kafka_metadata(handle, 1, nil, &metadata, timeoutMs)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError(
                code: .metadataFailed, message: "reading cluster metadata failed", librdkafkaError: .init(error))
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let entry = metadata.pointee.topics[index]
            guard let name = entry.topic, String(cString: name) == topic else { continue }
            if entry.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART { return nil }
            if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError(
                    code: .metadataFailed, message: "metadata of topic '\(topic)' has an error",
                    librdkafkaError: .init(entry.err))
            }
            return entry.partition_cnt
        }
        return nil
    }

    // MARK: Mock cluster (test support; the handle was made with `test.mock.num.brokers`)

    func mockClusterBootstrapServers() throws(KafkaError) -> [String] {
        guard let cluster = rd_kafka_handle_mock_cluster(handle) else {
            throw KafkaError(code: .clientCreationFailed, message: "the handle has no mock cluster")
        }
        // The mock coordinator delays a group's first join by 3 s (like a broker's
        // group.initial.rebalance.delay.ms); a shorter session timeout would expire the member.
        rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 100)
        let bootstraps = rd_kafka_mock_cluster_bootstraps(cluster).map { String(cString: $0) } ?? ""
        return bootstraps.split(separator: ",").map(String.init)
    }

    func mockCreateTopic(_ name: String, partitions: Int32, replicationFactor: Int32) throws(KafkaError) {
        guard let cluster = rd_kafka_handle_mock_cluster(handle) else {
            throw KafkaError(code: .clientCreationFailed, message: "the handle has no mock cluster")
        }
        let error = rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(code: .topicCreationFailed, message: "mock topic '\(name)'", librdkafkaError: .init(error))
        }
    }

    func mockSetBroker(_ id: Int32, up: Bool) {
        guard let cluster = rd_kafka_handle_mock_cluster(handle) else { return }
        if up {
            _ = rd_kafka_mock_broker_set_up(cluster, id)
        } else {
            _ = rd_kafka_mock_broker_set_down(cluster, id)
        }
    }
}

// MARK: - C callback helpers (free functions: C function pointers cannot capture context)

private func setErrorCallback(_ conf: OpaquePointer) {
    rd_kafka_conf_set_error_cb(conf) { rk, error, reason, opaque in
        guard let opaque else { return }
        let callbacks = Unmanaged<RDKafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
        let code = rd_kafka_resp_err_t(rawValue: error)
        var fatal = false
        var underlying = code
        var text = reason.map { String(cString: $0) } ?? ""
        if code == RD_KAFKA_RESP_ERR__FATAL, let rk {
            fatal = true
            var buffer = [CChar](repeating: 0, count: 512)
            underlying = rd_kafka_fatal_error(rk, &buffer, buffer.count)
            text = cString(buffer)
        }
        let kafkaError = KafkaError(
            code: fatal ? .fatal : .clientError,
            message: text,
            librdkafkaError: .init(underlying)
        )
        if let onError = callbacks.onError {
            onError(kafkaError, fatal)
        } else {
            callbacks.logger.warning("librdkafka error: \(kafkaError)")
        }
    }
}

private func handleRebalance(
    rk: OpaquePointer,
    error: rd_kafka_resp_err_t,
    partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
    callbacks: RDKafkaCallbacks
) {
    let cooperative = rd_kafka_rebalance_protocol(rk).map { String(cString: $0) } == "COOPERATIVE"
    let list = partitions.map(topicPartitions) ?? []
    switch error {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        // Record first so that messages fetched right after the assignment are accepted.
        callbacks.onRebalance?(.assigned(list))
        let result: String?
        if cooperative {
            result = rd_kafka_incremental_assign(rk, partitions).flatMap(consumeError)
        } else {
            let assignError = rd_kafka_assign(rk, partitions)
            result = assignError == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : String(cString: rd_kafka_err2name(assignError))
        }
        if let result {
            callbacks.logger.error("assigning partitions after a rebalance failed: \(result)")
        }
        callbacks.logger.info(
            "partitions assigned",
            metadata: ["partitions": "\(list.map(\.description))", "cooperative": "\(cooperative)"])
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        // Drop buffered messages of these partitions and refuse their commits *before* giving
        // them up, so that a late commit can never overwrite the new owner's position.
        let lost = rd_kafka_assignment_lost(rk) != 0
        callbacks.onRebalance?(.revoked(list, lost: lost))
        if cooperative {
            if let failure = rd_kafka_incremental_unassign(rk, partitions).flatMap(consumeError) {
                callbacks.logger.error("unassigning partitions after a rebalance failed: \(failure)")
            }
        } else {
            _ = rd_kafka_assign(rk, nil)
        }
        callbacks.logger.info(
            "partitions revoked", metadata: ["partitions": "\(list.map(\.description))", "lost": "\(lost)"])
    default:
        callbacks.logger.error("rebalance failed: \(String(cString: rd_kafka_err2name(error)))")
        callbacks.onRebalance?(.revoked(list, lost: true))
        _ = rd_kafka_assign(rk, nil)
    }
}

/// Reads and frees a `rd_kafka_error_t`, returning its name and text.
private func consumeError(_ error: OpaquePointer) -> String {
    defer { rd_kafka_error_destroy(error) }
    let name = rd_kafka_error_name(error).map { String(cString: $0) } ?? "?"
    let text = rd_kafka_error_string(error).map { String(cString: $0) } ?? ""
    return "\(name): \(text)"
}

private func topicPartitions(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [TopicPartition] {
    (0..<Int(list.pointee.cnt)).map { index in
        let element = list.pointee.elems[index]
        return TopicPartition(topic: element.topic.map { String(cString: $0) } ?? "", partition: element.partition)
    }
}

private func makeList(_ entries: [(TopicPartition, Int64)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    // Never NULL: librdkafka aborts on allocation failure instead of returning NULL.
    let list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t> = rd_kafka_topic_partition_list_new(
        Int32(entries.count))
    for (topicPartition, offset) in entries {
        let element = rd_kafka_topic_partition_list_add(list, topicPartition.topic, topicPartition.partition)
        element?.pointee.offset = offset
    }
    return list
}

private func deliveryResult(_ message: UnsafePointer<rd_kafka_message_t>) -> Result<MessagePosition, KafkaError> {
    let error = message.pointee.err
    let topic = message.pointee.rkt.flatMap { rd_kafka_topic_name($0) }.map { String(cString: $0) } ?? ""
    if error == RD_KAFKA_RESP_ERR_NO_ERROR {
        return .success(
            MessagePosition(topic: topic, partition: message.pointee.partition, offset: message.pointee.offset))
    }
    let code: KafkaError.Code
    let text: String
    switch error {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TIMED_OUT:
        code = .deliveryTimedOut
        text = "the broker did not acknowledge the message to '\(topic)' within the delivery timeout"
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE, RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        code = .producerShutDown
        text = "the producer shut down before the message to '\(topic)' was acknowledged"
    case RD_KAFKA_RESP_ERR__FATAL:
        code = .fatal
        text = "the producer hit a fatal error; the message to '\(topic)' was not delivered"
    default:
        code = .deliveryFailed
        text = "delivering the message to '\(topic)' failed"
    }
    return .failure(KafkaError(code: code, message: text, librdkafkaError: .init(error)))
}

private func incomingMessage(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> IncomingMessage {
    let topic = message.pointee.rkt.flatMap { rd_kafka_topic_name($0) }.map { String(cString: $0) } ?? ""
    let key: [UInt8]? = message.pointee.key.map {
        Array(UnsafeRawBufferPointer(start: $0, count: message.pointee.key_len))
    }
    let value: [UInt8] =
        message.pointee.payload.map {
            Array(UnsafeRawBufferPointer(start: $0, count: message.pointee.len))
        } ?? []
    var headers: [MessageHeader] = []
    var headerList: OpaquePointer?
    if rd_kafka_message_headers(message, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList {
        var index = 0
        var name: UnsafePointer<CChar>?
        var valuePointer: UnsafeRawPointer?
        var size = 0
        while rd_kafka_header_get_all(headerList, index, &name, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            let headerValue = valuePointer.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
            headers.append(MessageHeader(key: name.map { String(cString: $0) } ?? "", value: headerValue))
            index += 1
        }
    }
    var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
    let milliseconds = rd_kafka_message_timestamp(message, &timestampType)
    let timestamp = milliseconds >= 0 ? Date(timeIntervalSince1970: Double(milliseconds) / 1000) : nil
    return IncomingMessage(
        topic: topic,
        partition: message.pointee.partition,
        offset: message.pointee.offset,
        key: key,
        value: value,
        headers: headers,
        timestamp: timestamp
    )
}

private func withBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
    guard let bytes else { return body(nil, 0) }
    return bytes.withUnsafeBytes { body($0.baseAddress, $0.count) }
}

private func cString(_ buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { pointer in
        pointer.baseAddress.map { String(cString: $0) } ?? ""
    }
}

extension KafkaError.LibrdkafkaError {
    init(_ error: rd_kafka_resp_err_t) {
        self.init(code: error.rawValue, name: String(cString: rd_kafka_err2name(error)))
    }
}

extension Logger.Level {
    /// Maps librdkafka's syslog levels to swift-log levels.
    init(syslogLevel: Int32) {
        switch syslogLevel {
        case ...2: self = .critical
        case 3: self = .error
        case 4: self = .warning
        case 5: self = .notice
        case 6: self = .info
        default: self = .debug
        }
    }
}

/// librdkafka's own murmur2 partitioner, to cross-check ``KafkaPartitioner`` in tests. Its
/// topic argument is unused by librdkafka for this partitioner, so none is needed.
func librdkafkaMurmur2Partition(key: [UInt8], partitionCount: Int32) -> Int32 {
    key.withUnsafeBytes { bytes in
        rd_kafka_msg_partitioner_murmur2(nil, bytes.baseAddress, bytes.count, partitionCount, nil, nil)
    }
}
