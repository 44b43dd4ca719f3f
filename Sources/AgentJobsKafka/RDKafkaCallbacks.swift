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

// C callbacks are free functions: C function pointers cannot capture context.

func setErrorCallback(_ conf: OpaquePointer) {
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

func handleRebalance(
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
func consumeError(_ error: OpaquePointer) -> String {
    defer { rd_kafka_error_destroy(error) }
    let name = rd_kafka_error_name(error).map { String(cString: $0) } ?? "?"
    let text = rd_kafka_error_string(error).map { String(cString: $0) } ?? ""
    return "\(name): \(text)"
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
