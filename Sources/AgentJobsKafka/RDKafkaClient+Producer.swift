import AgentJobsCore
import CRdKafka
import Foundation
import Logging
import Synchronization

extension RDKafkaClient {
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

    /// Fails the messages not yet sent to a broker (through their delivery reports) and serves
    /// the reports. Messages in flight are left to report their real outcome. Blocking.
    func purgeQueueAndServe() {
        _ = rd_kafka_purge(handle, AGENTJOBS_RD_KAFKA_PURGE_QUEUE)
        rd_kafka_poll(handle, 0)
    }

    /// Makes librdkafka raise a fatal error as if the cluster had, for tests (`rd_kafka_test_fatal_error`).
    func raiseFatalErrorForTesting(reason: String) {
        _ = rd_kafka_test_fatal_error(handle, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID, reason)
    }

    /// Messages and requests not yet delivered.
    var outQueueLength: Int32 {
        rd_kafka_outq_len(handle)
    }
}
