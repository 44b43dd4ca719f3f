import AgentJobsCore
import AgentJobsTestSupport
import Logging
import Testing

@testable import AgentJobsKafka

@Suite("configuration validation")
struct ConfigurationTests {
    let client = KafkaClientConfiguration(bootstrapServers: ["127.0.0.1:9092"])

    @Test("producer defaults fix idempotence, acks=all, murmur2 and the delivery timeout")
    func producerDefaults() throws {
        let properties = try KafkaProducerConfiguration(client: client, deliveryTimeout: .seconds(3))
            .librdkafkaProperties()
        #expect(properties["enable.idempotence"] == "true")
        #expect(properties["acks"] == "all")
        #expect(properties["partitioner"] == "murmur2_random")
        #expect(properties["message.timeout.ms"] == "3000")
        #expect(properties["request.timeout.ms"] == "3000")
        #expect(properties["bootstrap.servers"] == "127.0.0.1:9092")
        #expect(properties["client.id"] == "agentjobs")
    }

    @Test("pass-through properties reach librdkafka on top of the defaults")
    func passThrough() throws {
        var client = self.client
        client.properties = [
            "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "compression.type": "zstd",
        ]
        let properties = try KafkaProducerConfiguration(client: client).librdkafkaProperties()
        #expect(properties["security.protocol"] == "SASL_SSL")
        #expect(properties["sasl.mechanism"] == "SCRAM-SHA-512")
        #expect(properties["compression.type"] == "zstd")
    }

    @Test(
        "properties that would break a guarantee are refused",
        arguments: [
            ["enable.idempotence": "false"], ["acks": "1"], ["request.required.acks": "0"],
            ["partitioner": "consistent_random"], ["message.timeout.ms": "100"], ["bootstrap.servers": "x:1"],
        ]
    )
    func producerRefusesOverrides(properties: [String: String]) {
        var client = self.client
        client.properties = properties
        #expect(throws: KafkaError.self) { try KafkaProducerConfiguration(client: client).librdkafkaProperties() }
        do {
            _ = try KafkaProducerConfiguration(client: client).librdkafkaProperties()
        } catch {
            #expect(error.code == .invalidConfiguration)
        }
    }

    @Test("equal values of fixed properties are accepted")
    func producerAcceptsEqualFixedValues() throws {
        var client = self.client
        client.properties = ["enable.idempotence": "true", "acks": "-1"]
        _ = try KafkaProducerConfiguration(client: client).librdkafkaProperties()
    }

    @Test("bootstrap servers must be present and host:port")
    func bootstrapValidation() {
        for servers in [[], [""], ["localhost"], ["a:1,b:2"], ["a :1"]] {
            let configuration = KafkaProducerConfiguration(client: .init(bootstrapServers: servers))
            #expect(throws: KafkaError.self, "\(servers)") { try configuration.librdkafkaProperties() }
        }
    }

    @Test("consumer settings: explicit commits, group id from the subscription")
    func consumerDefaults() throws {
        let configuration = KafkaConsumerConfiguration(
            client: client, subscription: .group(id: "aggregator", topics: ["agentjobs.run-events"]))
        let properties = try configuration.librdkafkaProperties()
        #expect(properties["group.id"] == "aggregator")
        #expect(properties["enable.auto.commit"] == "false")
        #expect(properties["enable.auto.offset.store"] == "false")
        #expect(properties["auto.offset.reset"] == "earliest")
    }

    @Test("group consumers fail over within their session timeout; static membership when an instance id is set")
    func groupMembership() throws {
        let group = ConsumerSubscription.group(id: "agg", topics: ["t"])
        let dynamic = try KafkaConsumerConfiguration(client: client, subscription: group).librdkafkaProperties()
        #expect(dynamic["session.timeout.ms"] == "10000")
        #expect(dynamic["heartbeat.interval.ms"] == "1000")
        #expect(dynamic["group.instance.id"] == nil)
        let staticMember = try KafkaConsumerConfiguration(
            client: client, subscription: group,
            membership: .init(
                sessionTimeout: .seconds(15), heartbeatInterval: .seconds(1), instanceID: "cp-1-aggregator")
        ).librdkafkaProperties()
        #expect(staticMember["session.timeout.ms"] == "15000")
        #expect(staticMember["group.instance.id"] == "cp-1-aggregator")
        // Manual assignment joins no group: no membership settings.
        let assigned = try KafkaConsumerConfiguration(
            client: client,
            subscription: .assignment(groupID: "h", partitions: [TopicPartition(topic: "t", partition: 0)])
        ).librdkafkaProperties()
        #expect(assigned["session.timeout.ms"] == nil)
        // Pass-through properties take precedence (a user's explicit librdkafka setting wins).
        var tuned = client
        tuned.properties = ["session.timeout.ms": "6000"]
        #expect(
            try KafkaConsumerConfiguration(client: tuned, subscription: group).librdkafkaProperties()[
                "session.timeout.ms"] == "6000")
        // A heartbeat that does not fit three times into the session is refused.
        #expect(throws: KafkaError.self) {
            try KafkaConsumerConfiguration(
                client: client, subscription: group,
                membership: .init(sessionTimeout: .seconds(2), heartbeatInterval: .seconds(1))
            ).librdkafkaProperties()
        }
    }

    @Test("consumer subscriptions are validated")
    func consumerValidation() {
        let invalid: [ConsumerSubscription] = [
            .group(id: "", topics: ["t"]),
            .group(id: "g", topics: []),
            .group(id: "g", topics: ["bad topic"]),
            .assignment(groupID: "g", partitions: []),
            .assignment(groupID: "g", partitions: [.init(topic: "t", partition: -1)]),
            .assignment(groupID: "g", partitions: [.init(topic: "t", partition: 0), .init(topic: "t", partition: 0)]),
            .assignment(groupID: "g", partitions: [.init(topic: "t", partition: 0)], keyFilter: []),
        ]
        for subscription in invalid {
            let configuration = KafkaConsumerConfiguration(client: client, subscription: subscription)
            #expect(throws: KafkaError.self, "\(subscription)") { try configuration.librdkafkaProperties() }
        }
        var zeroBuffer = KafkaConsumerConfiguration(client: client, subscription: .group(id: "g", topics: ["t"]))
        zeroBuffer.bufferCapacity = 0
        #expect(throws: KafkaError.self) { try zeroBuffer.librdkafkaProperties() }
        var autoCommit = KafkaConsumerConfiguration(client: client, subscription: .group(id: "g", topics: ["t"]))
        autoCommit.client.properties["enable.auto.commit"] = "true"
        #expect(throws: KafkaError.self) { try autoCommit.librdkafkaProperties() }
    }

    @Test("descriptions and errors never contain secret values")
    func secretsStayHidden() throws {
        let secret = "hunter2-very-secret"
        var client = self.client
        client.properties = ["sasl.password": secret, "sasl.username": "agent", "ssl.key.password": secret]
        #expect(!client.description.contains(secret))
        #expect(client.description.contains("sasl.username=agent"))
        #expect(!KafkaProducerConfiguration(client: client).description.contains(secret))

        // librdkafka echoes rejected values; for secret-looking names we must not.
        client.properties = ["sasl.password.typo": secret]
        do {
            _ = try KafkaProducer(configuration: .init(client: client), logger: testLogger("config"))
            Issue.record("an unknown property must be rejected")
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(!error.description.contains(secret))
            #expect(!error.debugDescription.contains(secret))
        }
    }

    @Test("librdkafka rejects unknown properties with a stable code")
    func unknownPropertyRejected() {
        var client = self.client
        client.properties = ["no.such.property": "1"]
        do {
            _ = try KafkaConsumer(
                configuration: .init(client: client, subscription: .group(id: "g", topics: ["t"])),
                logger: testLogger("config")
            )
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(error.code.rawValue == "kafka.invalid_configuration")
            #expect(error.message.contains("no.such.property"))
        }
    }

    @Test("librdkafka version gate: at least 2.10.1")
    func versionGate() throws {
        #expect(!KafkaRuntime.isSupported(versionNumber: 0x0200_02ff))  // Debian 12's 2.0.2
        #expect(!KafkaRuntime.isSupported(versionNumber: 0x0201_09ff))
        #expect(!KafkaRuntime.isSupported(versionNumber: 0x0202_00ff))
        #expect(!KafkaRuntime.isSupported(versionNumber: 0x0208_00ff))  // Debian 13's 2.8.0: #4964
        #expect(!KafkaRuntime.isSupported(versionNumber: 0x020a_00ff))  // 2.10.0
        #expect(KafkaRuntime.isSupported(versionNumber: 0x020a_01ff))
        #expect(KafkaRuntime.isSupported(versionNumber: 0x020a_0101))  // 2.10.1-RC1
        #expect(KafkaRuntime.isSupported(versionNumber: 0x020e_02ff))
        #expect(KafkaRuntime.isSupported(versionNumber: 0x0300_00ff))
        try KafkaRuntime.checkVersion()  // the library this test links
        #expect(KafkaRuntime.librdkafkaVersion.hasPrefix("2."))
    }

    @Test("topic specifications are validated before any request")
    func topicSpecificationValidation() {
        #expect(throws: KafkaError.self) { try KafkaTopicSpecification(name: "t", partitionCount: 0).validate() }
        #expect(throws: KafkaError.self) { try KafkaTopicSpecification(name: "..", partitionCount: 1).validate() }
        #expect(throws: KafkaError.self) {
            try KafkaTopicSpecification(name: "t", partitionCount: 1, replicationFactor: 0).validate()
        }
        #expect(throws: Never.self) {
            try KafkaTopicSpecification(name: "agentjobs.run-status", partitionCount: 12).validate()
        }
    }

    @Test("durations convert to whole milliseconds")
    func durations() {
        #expect(Duration.milliseconds(1500).wholeMilliseconds == 1500)
        #expect(Duration.microseconds(1999).wholeMilliseconds == 1)
        #expect(Duration.seconds(-1).wholeMilliseconds == nil)
    }
}
