import AgentJobsCore
import CRdKafka
import Foundation
import Logging
import Synchronization

/// The one type that owns `rd_kafka_*` handles. Every C call of the package goes through it.
///
/// librdkafka handles are thread-safe; this type adds no locking of its own except around
/// destruction. Blocking methods (`poll`, `flush`, `commit`, `close`, admin requests) must be
/// called from a dedicated thread or dispatch queue, never from the cooperative pool.
///
/// This file holds the handle's life (creation from a property set, destruction); producing,
/// consuming, admin requests and the mock cluster are in the `RDKafkaClient+…` files, the C
/// callbacks in `RDKafkaCallbacks.swift`.
final class RDKafkaClient: @unchecked Sendable {
    enum Kind: Sendable {
        case producer
        case consumer(groupRebalanceCallback: Bool)
        case admin
    }

    let kind: Kind
    let handle: OpaquePointer
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

    /// Runs `body` unless the handle is destroyed, holding off ``destroy()`` until it returns: for
    /// reads from other threads that may come at any time (the metrics' lag, the readiness
    /// metadata request). A blocking body must be bounded: it delays a shutdown by as long.
    func ifAlive<T>(_ body: () -> T) -> T? {
        destroyed.withLock { destroyed in destroyed ? nil : body() }
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
}
