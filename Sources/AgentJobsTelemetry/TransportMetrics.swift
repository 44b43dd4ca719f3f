import AgentJobsCore
import CoreMetrics
import Synchronization

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
/// A partition the group's consumer no longer owns (revoked in a rebalance) is set to 0 by this
/// replica, instead of keeping the value it had when it was revoked: its new owner reports it.
public enum ConsumerLagMetrics {
    /// The partitions last reported, by group.
    private static let reported = Mutex<[String: Set<TopicPartition>]>([:])

    public static func record(group: String, _ lag: [TopicPartition: Int64]) {
        for (partition, messages) in withRevoked(group: group, lag) {
            Gauge(
                label: "agentjobs_consumer_lag_messages",
                dimensions: [
                    ("group", group), ("topic", partition.topic), ("partition", String(partition.partition)),
                ]
            ).record(messages)
        }
    }

    /// `lag`, plus 0 for each partition reported for `group` last time and missing now.
    static func withRevoked(group: String, _ lag: [TopicPartition: Int64]) -> [TopicPartition: Int64] {
        let revoked = reported.withLock { reported in
            defer { reported[group] = Set(lag.keys) }
            return reported[group, default: []].subtracting(lag.keys)
        }
        var result = lag
        for partition in revoked { result[partition] = 0 }
        return result
    }
}
