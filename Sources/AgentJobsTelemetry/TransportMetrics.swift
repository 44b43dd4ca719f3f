import AgentJobsCore
import CoreMetrics

/// Messages refused and set aside (`agentjobs_dead_letters_total`), by the topic they were read
/// from and the reason's code (``WireError/Code``, `unknown_run`, `wrong_host`): the text after
/// the code names ids and stays in the dead letter's header, out of the label.
public enum TransportMetrics {
    public static func deadLettered(from topic: String, reason: String) {
        Counter(
            label: "agentjobs_dead_letters_total", dimensions: [("topic", topic), ("reason", code(of: reason))]
        ).increment()
    }

    /// The code a dead-letter reason starts with (`bad_signature: ...` → `bad_signature`); `other`
    /// when it starts with none of the known ones, so the label set stays bounded.
    static func code(of reason: String) -> String {
        let prefix = reason.prefix { $0 != ":" }
        return known.contains(String(prefix)) ? String(prefix) : "other"
    }

    private static let known: Set<String> = Set(
        [
            WireError.Code.missingHeader, .unsupportedSpecVersion, .unknownType, .unknownVersion, .undecodableBody,
            .badSignature, .wrongHost, .unknownHost, .revokedHost,
        ].map(\.rawValue) + ["unknown_run"])
}

/// Consumer lag: messages in a partition not yet committed by a consumer group
/// (`agentjobs_consumer_lag_messages`), refreshed when metrics are scraped.
public enum ConsumerLagMetrics {
    public static func record(group: String, _ lag: [TopicPartition: Int64]) {
        for (partition, messages) in lag {
            Gauge(
                label: "agentjobs_consumer_lag_messages",
                dimensions: [
                    ("group", group), ("topic", partition.topic), ("partition", String(partition.partition)),
                ]
            ).record(messages)
        }
    }
}
