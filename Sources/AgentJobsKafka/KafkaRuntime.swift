import CRdKafka

/// Facts about the librdkafka linked at run time.
public enum KafkaRuntime {
    /// The oldest librdkafka AgentJobs runs on: 2.10.1.
    ///
    /// Why: from 2.4.0 to 2.9.x, a topic deleted and created again under the same name (a new topic
    /// id) leaves a freed entry in the client's metadata cache, and the client crashes in its own
    /// thread soon after (confluentinc/librdkafka#4964, fixed in 2.10.0; 2.10.1 fixes a re-bootstrap
    /// loop of 2.10.0). That ends every role without a word, for example when a broker with memory
    /// storage restarts. Before 2.2, Kafka-protocol brokers other than Apache Kafka (Tansu in our
    /// tests) negotiate protocol versions that librdkafka handles wrongly. Build a supported one
    /// with `deploy/testenv/librdkafka.sh`.
    public static let minimumVersion = "2.10.1"

    /// ``minimumVersion`` as librdkafka's `0xMMmmrr` (pre-release byte dropped).
    static let minimumVersionNumber: Int32 = 0x02_0a_01

    /// `rd_kafka_version_str()` of the linked library, e.g. `2.14.2`.
    public static var librdkafkaVersion: String {
        String(cString: rd_kafka_version_str())
    }

    /// Whether a `rd_kafka_version()` value is at least ``minimumVersion`` (release candidates of
    /// a supported version count as supported).
    static func isSupported(versionNumber: Int32) -> Bool {
        (versionNumber >> 8) & 0xff_ffff >= minimumVersionNumber
    }

    /// Checks the linked librdkafka.
    /// - Throws: ``KafkaError`` with code ``KafkaError/Code/unsupportedLibrdkafkaVersion``
    ///   when it is older than ``minimumVersion``.
    public static func checkVersion() throws(KafkaError) {
        guard isSupported(versionNumber: rd_kafka_version()) else {
            throw KafkaError(
                code: .unsupportedLibrdkafkaVersion,
                message: "librdkafka \(librdkafkaVersion) is linked, but AgentJobs needs at least "
                    + "\(minimumVersion); build one with deploy/testenv/librdkafka.sh and link it "
                    + "(see README.md, Requirements)"
            )
        }
    }
}
