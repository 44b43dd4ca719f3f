import AgentJobsCore
import CRdKafka
import Foundation
import Logging
import Synchronization

// librdkafka messages and errors to and from Swift values.

func deliveryResult(_ message: UnsafePointer<rd_kafka_message_t>) -> Result<MessagePosition, KafkaError> {
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

func incomingMessage(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> IncomingMessage {
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

func withBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
    guard let bytes else { return body(nil, 0) }
    return bytes.withUnsafeBytes { body($0.baseAddress, $0.count) }
}

func cString(_ buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { pointer in
        pointer.baseAddress.map { String(cString: $0) } ?? ""
    }
}

extension KafkaError.LibrdkafkaError {
    init(_ error: rd_kafka_resp_err_t) {
        self.init(code: error.rawValue, name: String(cString: rd_kafka_err2name(error)))
    }
}

/// librdkafka's own murmur2 partitioner, to cross-check ``KafkaPartitioner`` in tests. Its
/// topic argument is unused by librdkafka for this partitioner, so none is needed.
func librdkafkaMurmur2Partition(key: [UInt8], partitionCount: Int32) -> Int32 {
    key.withUnsafeBytes { bytes in
        rd_kafka_msg_partitioner_murmur2(nil, bytes.baseAddress, bytes.count, partitionCount, nil, nil)
    }
}
