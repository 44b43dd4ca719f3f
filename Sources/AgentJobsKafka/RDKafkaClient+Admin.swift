import AgentJobsCore
import CRdKafka
import Foundation
import Logging
import Synchronization

extension RDKafkaClient {
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

    /// Asks a broker for the cluster's metadata: nil when one answered within `timeoutMs`, else why
    /// not. All topics are asked for, not the ones this client knows: that request never creates a
    /// topic, and its answer does not depend on whether those topics still exist (a broker that
    /// lost them is reachable all the same). Blocking.
    func checkBroker(timeoutMs: Int32) -> String? {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let error = rd_kafka_metadata(handle, 1, nil, &metadata, timeoutMs)
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return "no broker answered a metadata request: \(String(cString: rd_kafka_err2str(error)))"
        }
        return nil
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
}
