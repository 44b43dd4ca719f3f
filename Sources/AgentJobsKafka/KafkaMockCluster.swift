import Logging

/// librdkafka's in-process mock Kafka cluster, for tests that need brokers without a network
/// service (`test.mock.num.brokers`, shareable between several clients through its bootstrap
/// list).
///
/// Test support only: `package` visibility keeps it out of the public API.
package final class KafkaMockCluster: Sendable {
    private let host: RDKafkaClient
    /// The `host:port,…` list to use as `bootstrapServers`.
    package let bootstrapServers: [String]

    /// Starts a mock cluster with `brokers` brokers (ids 1…brokers).
    /// - Throws: ``KafkaError`` when librdkafka cannot create it.
    package init(brokers: Int32 = 1, logger: Logger) throws(KafkaError) {
        // The cluster lives inside a handle of its own and goes away with it.
        host = try RDKafkaClient.make(
            kind: .admin,
            properties: ["test.mock.num.brokers": "\(brokers)"],
            callbacks: RDKafkaCallbacks(logger: logger)
        )
        bootstrapServers = try host.mockClusterBootstrapServers()
    }

    deinit {
        host.destroy()
    }

    /// Creates a topic in the mock cluster (the mock does not implement the CreateTopics admin
    /// request, so ``KafkaAdmin/createTopics(_:timeout:)`` is tested against a real broker).
    package func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws(KafkaError) {
        try host.mockCreateTopic(name, partitions: partitions, replicationFactor: replicationFactor)
    }

    /// Delays every response of broker `id` by `delay` (zero: answers at once again): a broker
    /// that stopped answering, for timeouts.
    ///
    /// This stands in for a broker outage. Taking a mock broker down and up again
    /// (`rd_kafka_mock_broker_set_down`/`_up`) closes its listening socket and binds the same port
    /// again, and librdkafka 2.8 aborts the process when another socket took the port meanwhile; a
    /// partition without a leader crashes its mock Produce handler.
    package func setResponseDelay(ofBroker id: Int32, _ delay: Duration) {
        host.mockSetBrokerRTT(id, milliseconds: Int32(clamping: delay.components.seconds * 1000))
    }
}
