import AgentJobsCore
import CRdKafka
import Foundation
import Logging
import Synchronization

extension RDKafkaClient {
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

    func mockSetBrokerRTT(_ id: Int32, milliseconds: Int32) {
        guard let cluster = rd_kafka_handle_mock_cluster(handle) else { return }
        _ = rd_kafka_mock_broker_set_rtt(cluster, id, milliseconds)
    }
}
