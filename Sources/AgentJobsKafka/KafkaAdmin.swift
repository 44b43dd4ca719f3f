import AgentJobsCore
import Dispatch
import Logging

/// Topic administration: creating the AgentJobs topics when missing and reading partition
/// counts (an orchestrator needs the count of `agentjobs.dispatch` to find its partition).
///
/// Every request runs on a private dispatch queue, off the cooperative pool. Call
/// ``shutdown()`` when done; the handle is also released when the value is deinitialised.
public final class KafkaAdmin: Sendable {
    private let client: RDKafkaClient
    private let queue = DispatchQueue(label: "agentjobs.kafka.admin")
    private let logger: Logger

    /// Creates an admin client (connects lazily).
    /// - Parameters:
    ///   - configuration: Connection settings; `properties` pass through (SASL, TLS, …).
    ///   - logger: Receives librdkafka log lines.
    /// - Throws: ``KafkaError`` (`invalidConfiguration`, `unsupportedLibrdkafkaVersion`,
    ///   `clientCreationFailed`).
    public init(configuration: KafkaClientConfiguration, logger: Logger) throws(KafkaError) {
        try configuration.validate()
        let properties = configuration.baseProperties().merging(configuration.properties) { _, user in user }
        self.client = try RDKafkaClient.make(
            kind: .admin, properties: properties, callbacks: RDKafkaCallbacks(logger: logger))
        self.logger = logger
    }

    /// Kafka's Java-compatible murmur2 partition of `key`; see
    /// ``KafkaPartitioner/partition(forKey:partitionCount:)-(some Collection<UInt8>,_)``.
    public static func partition(forKey key: String, partitionCount: Int32) -> Int32 {
        KafkaPartitioner.partition(forKey: key, partitionCount: partitionCount)
    }

    /// Creates the topics that do not exist yet. Idempotent: `TOPIC_ALREADY_EXISTS` is success,
    /// and an existing topic keeps its partition count.
    /// - Parameters:
    ///   - topics: The topics with their partition counts.
    ///   - timeout: Request and operation timeout.
    /// - Throws: ``KafkaError`` with code `invalidConfiguration` (bad specification),
    ///   `topicCreationFailed` (the first failing topic) or `timedOut`.
    public func createTopics(_ topics: [KafkaTopicSpecification], timeout: Duration = .seconds(30))
        async throws(KafkaError)
    {
        guard !topics.isEmpty else { return }
        for topic in topics { try topic.validate() }
        let timeoutMs = Int32(clamping: timeout.wholeMilliseconds ?? 30_000)
        let client = self.client
        let failures = try await Blocking.on(queue) { () throws(KafkaError) in
            try client.createTopics(topics, timeoutMs: timeoutMs)
        }
        if let name = failures.keys.sorted().first, let failure = failures[name] {
            throw failure
        }
        logger.info("Kafka topics present", metadata: ["kafka.topics": "\(topics.map(\.name))"])
    }

    /// The number of partitions of `topic`, or `nil` when the cluster does not know it.
    /// - Parameters:
    ///   - topic: The topic name.
    ///   - timeout: Metadata request timeout.
    /// - Throws: ``KafkaError`` with code `metadataFailed`.
    public func partitionCount(ofTopic topic: String, timeout: Duration = .seconds(10)) async throws(KafkaError)
        -> Int32?
    {
        try validateTopicName(topic)
        let timeoutMs = Int32(clamping: timeout.wholeMilliseconds ?? 10_000)
        let client = self.client
        return try await Blocking.on(queue) { () throws(KafkaError) in
            try client.partitionCount(topic: topic, timeoutMs: timeoutMs)
        }
    }

    /// Destroys the handle (blocking work runs off the cooperative pool).
    public func shutdown() async {
        let client = self.client
        await Blocking.onDedicatedThread(name: "agentjobs-kafka-admin-destroy") {
            client.destroy()
        }
    }
}
