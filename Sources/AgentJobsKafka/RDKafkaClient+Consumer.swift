import AgentJobsCore
import CRdKafka
import Foundation
import Logging
import Synchronization

extension RDKafkaClient {
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

    /// Messages behind the end of each of `partitions`: its high watermark as last seen in a fetch
    /// response (no broker call) minus the offset given for it, or, when none is given, the next
    /// offset this consumer will fetch. A partition whose end is not known yet is left out.
    func lag(_ partitions: [TopicPartition: Int64?]) -> [TopicPartition: Int64] {
        let unknown = partitions.filter { $0.value == nil }.map(\.key)
        var from: [TopicPartition: Int64] = partitions.compactMapValues { $0 }
        if !unknown.isEmpty {
            let list = makeList(unknown.map { ($0, AGENTJOBS_RD_KAFKA_OFFSET_STORED) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            if rd_kafka_position(handle, list) == RD_KAFKA_RESP_ERR_NO_ERROR {
                for index in 0..<Int(list.pointee.cnt) {
                    let element = list.pointee.elems[index]
                    guard element.offset >= 0, let topic = element.topic else { continue }
                    from[TopicPartition(topic: String(cString: topic), partition: element.partition)] = element.offset
                }
            }
        }
        var lag: [TopicPartition: Int64] = [:]
        for (partition, offset) in from {
            var low: Int64 = -1
            var high: Int64 = -1
            let error = rd_kafka_get_watermark_offsets(handle, partition.topic, partition.partition, &low, &high)
            guard error == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { continue }
            lag[partition] = max(0, high - offset)
        }
        return lag
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
}
