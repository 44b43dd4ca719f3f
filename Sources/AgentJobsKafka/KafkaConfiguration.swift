import AgentJobsCore

/// Connection settings shared by producers, consumers and the admin client.
///
/// `properties` are passed to librdkafka unchanged on top of AgentJobs' defaults, so every
/// librdkafka setting is reachable from configuration: SASL (`security.protocol`,
/// `sasl.mechanism`, `sasl.username`, `sasl.password`), TLS (`ssl.ca.location`, …), timeouts,
/// `debug`, and so on. The few settings that AgentJobs' guarantees depend on are fixed or come
/// from typed fields; setting them here to a different value is a configuration error.
public struct KafkaClientConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// Initial brokers as `host:port` (librdkafka `bootstrap.servers`).
    public var bootstrapServers: [String]
    /// `client.id`, shown in broker logs and metrics.
    public var clientID: String
    /// Extra librdkafka properties, applied on top of the defaults.
    public var properties: [String: String]

    /// Creates a client configuration.
    /// - Parameters:
    ///   - bootstrapServers: Initial brokers as `host:port`; at least one.
    ///   - clientID: The `client.id`.
    ///   - properties: Extra librdkafka properties (SASL, TLS, tuning).
    public init(
        bootstrapServers: [String],
        clientID: String = "agentjobs",
        properties: [String: String] = [:]
    ) {
        self.bootstrapServers = bootstrapServers
        self.clientID = clientID
        self.properties = properties
    }

    /// A description safe for logs: values of secret properties are replaced by `<redacted>`.
    public var description: String {
        let rendered = properties.keys.sorted().map { key in
            "\(key)=\(Self.isSensitive(key) ? "<redacted>" : properties[key, default: ""])"
        }
        return "KafkaClientConfiguration(bootstrapServers: \(bootstrapServers.joined(separator: ",")), "
            + "clientID: \(clientID), properties: [\(rendered.joined(separator: ", "))])"
    }

    /// Whether a property's value must never appear in logs or errors.
    static func isSensitive(_ key: String) -> Bool {
        let lowered = key.lowercased()
        return ["password", "secret", "token", "oauthbearer.config", "ssl.key.pem", "ssl_key", "keystore"]
            .contains { lowered.contains($0) }
    }

    /// Property names that typed fields set; they may not appear in `properties` too.
    static let clientManagedKeys: [String: String] = [
        "bootstrap.servers": "bootstrapServers",
        "metadata.broker.list": "bootstrapServers",
        "client.id": "clientID",
    ]

    func validate() throws(KafkaError) {
        if bootstrapServers.isEmpty {
            throw KafkaError(
                code: .invalidConfiguration,
                message: "bootstrapServers is empty: name at least one broker as host:port"
            )
        }
        for server in bootstrapServers {
            let valid =
                !server.isEmpty && !server.contains(where: { $0 == "," || $0.isWhitespace })
                && server.contains(":")
            if !valid {
                throw KafkaError(
                    code: .invalidConfiguration,
                    message: "bootstrap server '\(server)' is not of the form host:port"
                )
            }
        }
        if clientID.isEmpty {
            throw KafkaError(code: .invalidConfiguration, message: "clientID is empty")
        }
        for key in properties.keys {
            if key.isEmpty || key.contains(where: \.isWhitespace) {
                throw KafkaError(
                    code: .invalidConfiguration,
                    message: "property name '\(key)' is empty or contains whitespace"
                )
            }
        }
    }

    /// The base properties every client type shares (pass-through `properties` override the
    /// defaults other than the managed ones).
    func baseProperties() -> [String: String] {
        [
            "bootstrap.servers": bootstrapServers.joined(separator: ","),
            "client.id": clientID,
            // librdkafka (default 10 s) checks message timeouts only between reconnect back-off
            // sleeps, so against a stopped broker sends would fail up to 10 s late; 1 s is the
            // Java client's default and also makes recovery quicker.
            "reconnect.backoff.max.ms": "1000",
        ]
    }
}

/// Settings of a ``KafkaProducer``.
///
/// Fixed by AgentJobs (ARCHITECTURE.md, "Kafka topology"): `enable.idempotence=true`,
/// `acks=all` and `partitioner=murmur2_random` (the Java client's key→partition mapping, which
/// manually assigned consumers rely on).
public struct KafkaProducerConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// Connection settings and pass-through librdkafka properties.
    public var client: KafkaClientConfiguration
    /// How long a message may wait for the broker's acknowledgement, retries included, before
    /// its send fails with ``KafkaError/Code/deliveryTimedOut`` (`message.timeout.ms`). A
    /// producer facing a stopped broker therefore fails within this time instead of hanging.
    public var deliveryTimeout: Duration
    /// How long shutdown waits for in-flight messages before failing them
    /// (``KafkaError/Code/producerShutDown``).
    public var shutdownFlushTimeout: Duration
    /// How long librdkafka waits to fill a batch (`linger.ms`); batching only happens when many
    /// sends are in flight, so a lone send pays at most this latency.
    public var linger: Duration

    /// Creates a producer configuration.
    /// - Parameters:
    ///   - client: Connection settings and pass-through properties.
    ///   - deliveryTimeout: `message.timeout.ms`; at least 1 ms.
    ///   - shutdownFlushTimeout: Deadline of the flush on shutdown.
    ///   - linger: `linger.ms`.
    public init(
        client: KafkaClientConfiguration,
        deliveryTimeout: Duration = .seconds(30),
        shutdownFlushTimeout: Duration = .seconds(10),
        linger: Duration = .milliseconds(5)
    ) {
        self.client = client
        self.deliveryTimeout = deliveryTimeout
        self.shutdownFlushTimeout = shutdownFlushTimeout
        self.linger = linger
    }

    public var description: String {
        "KafkaProducerConfiguration(client: \(client), deliveryTimeout: \(deliveryTimeout), "
            + "shutdownFlushTimeout: \(shutdownFlushTimeout), linger: \(linger))"
    }

    /// Properties whose value AgentJobs fixes; `properties` may only repeat an equal value.
    static let fixed: [String: Set<String>] = [
        "enable.idempotence": ["true"],
        "acks": ["all", "-1"],
        "request.required.acks": ["all", "-1"],
        "partitioner": ["murmur2_random"],
    ]

    static let managedKeys: [String: String] = [
        "message.timeout.ms": "deliveryTimeout",
        "delivery.timeout.ms": "deliveryTimeout",
        "linger.ms": "linger",
        "queue.buffering.max.ms": "linger",
    ]

    /// Validates the configuration and returns the complete librdkafka property set.
    /// - Throws: ``KafkaError`` with code ``KafkaError/Code/invalidConfiguration``.
    public func librdkafkaProperties() throws(KafkaError) -> [String: String] {
        try client.validate()
        guard let timeoutMs = deliveryTimeout.wholeMilliseconds, timeoutMs >= 1, timeoutMs <= Int64(Int32.max) else {
            throw KafkaError(code: .invalidConfiguration, message: "deliveryTimeout must be between 1 ms and ~24 days")
        }
        guard let flushMs = shutdownFlushTimeout.wholeMilliseconds, flushMs >= 0 else {
            throw KafkaError(code: .invalidConfiguration, message: "shutdownFlushTimeout must not be negative")
        }
        guard let lingerMs = linger.wholeMilliseconds, lingerMs >= 0, lingerMs <= 900_000 else {
            throw KafkaError(code: .invalidConfiguration, message: "linger must be between 0 and 900 seconds")
        }
        try checkPassThrough(
            client.properties,
            fixed: Self.fixed,
            managed: Self.managedKeys.merging(KafkaClientConfiguration.clientManagedKeys) { a, _ in a },
            owner: "KafkaProducerConfiguration"
        )
        var result = client.baseProperties()
        result["enable.idempotence"] = "true"
        result["acks"] = "all"
        result["partitioner"] = "murmur2_random"
        result["message.timeout.ms"] = String(timeoutMs)
        // An in-flight produce request waits for its ack up to request.timeout.ms (30 s by
        // default), and librdkafka cannot time out an in-flight idempotent message before that;
        // bounding it by the delivery timeout keeps sends within it (override via properties).
        result["request.timeout.ms"] = String(min(timeoutMs, 30_000))
        result["linger.ms"] = String(lingerMs)
        // Surface delivery reports for every message, successful or not.
        result["delivery.report.only.error"] = "false"
        result.merge(client.properties) { _, user in user }
        return result
    }
}

/// Where a consumer group without a committed position starts reading (`auto.offset.reset`).
public enum KafkaAutoOffsetReset: String, Sendable, Hashable {
    /// From the oldest retained message.
    case earliest
    /// From the next message produced.
    case latest
    /// Fail instead of guessing.
    case error
}

/// Settings of a ``KafkaConsumer``.
///
/// Fixed by AgentJobs: `enable.auto.commit=false` and `enable.auto.offset.store=false`
/// (positions are committed explicitly, after the caller's effect is durable) and
/// `enable.partition.eof=false`. `group.id` comes from ``subscription``.
public struct KafkaConsumerConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// Connection settings and pass-through librdkafka properties.
    public var client: KafkaClientConfiguration
    /// Group subscription or manual partition assignment.
    public var subscription: ConsumerSubscription
    /// How many messages may wait between librdkafka and the reader of
    /// ``KafkaConsumer/messages``; when full, polling pauses until the reader catches up.
    public var bufferCapacity: Int
    /// Where to start without a committed position.
    public var autoOffsetReset: KafkaAutoOffsetReset
    /// How a group member is kept in its group (``ConsumerSubscription/group(id:topics:)`` only).
    /// `session.timeout.ms`, `heartbeat.interval.ms` or `group.instance.id` in the client's
    /// pass-through properties take precedence.
    public var membership: GroupMembership

    /// Consumer-group membership settings: how fast a dead or restarted member's partitions move.
    public struct GroupMembership: Sendable, Hashable {
        /// A member not heard from for this long is removed and its partitions reassigned
        /// (`session.timeout.ms`). Kafka brokers accept 6 s to 30 min by default.
        public var sessionTimeout: Duration
        /// How often the member tells the coordinator it is alive (`heartbeat.interval.ms`).
        public var heartbeatInterval: Duration
        /// Static membership (`group.instance.id`): a restarted member with the same id takes its
        /// partitions back at once on Apache Kafka. `nil` for dynamic membership.
        public var instanceID: String?

        /// Creates membership settings.
        public init(
            sessionTimeout: Duration = .seconds(10), heartbeatInterval: Duration = .seconds(1),
            instanceID: String? = nil
        ) {
            self.sessionTimeout = sessionTimeout
            self.heartbeatInterval = heartbeatInterval
            self.instanceID = instanceID
        }
    }

    /// Creates a consumer configuration.
    /// - Parameters:
    ///   - client: Connection settings and pass-through properties.
    ///   - subscription: What to read.
    ///   - bufferCapacity: Messages buffered ahead of the reader; at least 1.
    ///   - autoOffsetReset: Where to start without a committed position.
    ///   - membership: Group membership settings (used by group subscriptions only).
    public init(
        client: KafkaClientConfiguration,
        subscription: ConsumerSubscription,
        bufferCapacity: Int = 256,
        autoOffsetReset: KafkaAutoOffsetReset = .earliest,
        membership: GroupMembership = .init()
    ) {
        self.client = client
        self.subscription = subscription
        self.bufferCapacity = bufferCapacity
        self.autoOffsetReset = autoOffsetReset
        self.membership = membership
    }

    public var description: String {
        "KafkaConsumerConfiguration(client: \(client), subscription: \(subscription), "
            + "bufferCapacity: \(bufferCapacity), autoOffsetReset: \(autoOffsetReset.rawValue), "
            + "sessionTimeout: \(membership.sessionTimeout), instanceID: \(membership.instanceID ?? "none"))"
    }

    static let fixed: [String: Set<String>] = [
        "enable.auto.commit": ["false"],
        "enable.auto.offset.store": ["false"],
        "enable.partition.eof": ["false"],
    ]

    static let managedKeys: [String: String] = [
        "group.id": "subscription",
        "auto.offset.reset": "autoOffsetReset",
    ]

    /// Validates the configuration and returns the complete librdkafka property set.
    /// - Throws: ``KafkaError`` with code ``KafkaError/Code/invalidConfiguration``.
    public func librdkafkaProperties() throws(KafkaError) -> [String: String] {
        try client.validate()
        guard bufferCapacity >= 1 else {
            throw KafkaError(code: .invalidConfiguration, message: "bufferCapacity must be at least 1")
        }
        if subscription.groupID.isEmpty {
            throw KafkaError(code: .invalidConfiguration, message: "the subscription's group id is empty")
        }
        switch subscription {
        case .group(_, let topics):
            if topics.isEmpty {
                throw KafkaError(code: .invalidConfiguration, message: "a group subscription needs at least one topic")
            }
            for topic in topics { try validateTopicName(topic) }
            let session = membership.sessionTimeout.milliseconds
            let heartbeat = membership.heartbeatInterval.milliseconds
            guard session >= 1000, heartbeat >= 100, heartbeat * 3 <= session else {
                throw KafkaError(
                    code: .invalidConfiguration,
                    message:
                        "the group session timeout (\(session) ms) must be at least 1 s and three times the heartbeat interval (\(heartbeat) ms)"
                )
            }
            if let instance = membership.instanceID, instance.isEmpty || instance.utf8.count > 249 {
                throw KafkaError(
                    code: .invalidConfiguration, message: "the group instance id must have 1 to 249 characters")
            }
        case .assignment(_, let partitions, let keyFilter):
            if partitions.isEmpty {
                throw KafkaError(
                    code: .invalidConfiguration, message: "a manual assignment needs at least one partition")
            }
            for partition in partitions {
                try validateTopicName(partition.topic)
                if partition.partition < 0 {
                    throw KafkaError(
                        code: .invalidConfiguration,
                        message: "partition \(partition.partition) of topic '\(partition.topic)' is negative"
                    )
                }
            }
            if Set(partitions).count != partitions.count {
                throw KafkaError(code: .invalidConfiguration, message: "the manual assignment lists a partition twice")
            }
            if let keyFilter, keyFilter.isEmpty {
                throw KafkaError(code: .invalidConfiguration, message: "keyFilter is empty; use nil to read every key")
            }
        }
        try checkPassThrough(
            client.properties,
            fixed: Self.fixed,
            managed: Self.managedKeys.merging(KafkaClientConfiguration.clientManagedKeys) { a, _ in a },
            owner: "KafkaConsumerConfiguration"
        )
        var result = client.baseProperties()
        result["group.id"] = subscription.groupID
        result["enable.auto.commit"] = "false"
        result["enable.auto.offset.store"] = "false"
        result["enable.partition.eof"] = "false"
        result["auto.offset.reset"] = autoOffsetReset.rawValue
        if case .group = subscription {
            result["session.timeout.ms"] = String(membership.sessionTimeout.milliseconds)
            result["heartbeat.interval.ms"] = String(membership.heartbeatInterval.milliseconds)
            if let instance = membership.instanceID { result["group.instance.id"] = instance }
        }
        result.merge(client.properties) { _, user in user }
        return result
    }
}

extension Duration {
    /// Whole milliseconds (rounded down).
    fileprivate var milliseconds: Int64 {
        let parts = components
        return parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000
    }
}

/// A topic to create with ``KafkaAdmin/createTopics(_:timeout:)``.
public struct KafkaTopicSpecification: Sendable, Hashable {
    /// The topic name.
    public var name: String
    /// The number of partitions; at least 1.
    public var partitionCount: Int32
    /// The replication factor, or `-1` for the broker's default.
    public var replicationFactor: Int32
    /// Topic-level configuration, e.g. `cleanup.policy=compact` for `agentjobs.run-status`.
    public var configuration: [String: String]

    /// Creates a topic specification.
    public init(
        name: String,
        partitionCount: Int32,
        replicationFactor: Int32 = -1,
        configuration: [String: String] = [:]
    ) {
        self.name = name
        self.partitionCount = partitionCount
        self.replicationFactor = replicationFactor
        self.configuration = configuration
    }

    func validate() throws(KafkaError) {
        try validateTopicName(name)
        if partitionCount < 1 {
            throw KafkaError(code: .invalidConfiguration, message: "topic '\(name)' needs at least one partition")
        }
        if replicationFactor == 0 || replicationFactor < -1 {
            throw KafkaError(
                code: .invalidConfiguration,
                message: "topic '\(name)': replication factor must be positive or -1 (broker default)"
            )
        }
    }
}

/// Kafka's legal topic names: 1–249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
func validateTopicName(_ name: String) throws(KafkaError) {
    let legal = name.utf8.allSatisfy { byte in
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            || byte == 0x2E || byte == 0x5F || byte == 0x2D
    }
    if name.isEmpty || name.utf8.count > 249 || !legal || name == "." || name == ".." {
        throw KafkaError(
            code: .invalidConfiguration,
            message: "'\(name)' is not a legal topic name (1-249 characters from a-z A-Z 0-9 . _ -)"
        )
    }
}

/// Rejects pass-through properties that would break a guarantee or duplicate a typed field.
private func checkPassThrough(
    _ properties: [String: String],
    fixed: [String: Set<String>],
    managed: [String: String],
    owner: String
) throws(KafkaError) {
    for key in properties.keys.sorted() {
        if let allowed = fixed[key], let value = properties[key], !allowed.contains(value.lowercased()) {
            // The value of a fixed property is never secret, but print the allowed value rather
            // than echo input.
            throw KafkaError(
                code: .invalidConfiguration,
                message:
                    "property '\(key)' is fixed to '\(allowed.sorted().first ?? "")' by AgentJobs; remove it from properties"
            )
        }
        if let field = managed[key] {
            throw KafkaError(
                code: .invalidConfiguration,
                message: "property '\(key)' is set through \(owner).\(field) (or its client); remove it from properties"
            )
        }
    }
}

extension Duration {
    /// The duration in whole milliseconds (rounded down), or `nil` when negative or too large.
    var wholeMilliseconds: Int64? {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0, seconds < Int64.max / 1000 - 1 else { return nil }
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
