import CRdKafka

/// Facts about the librdkafka linked at run time.
public enum KafkaRuntime {
    /// The oldest librdkafka AgentJobs runs on: 2.2.0.
    ///
    /// Why: Kafka-protocol brokers other than Apache Kafka (Tansu in our tests) negotiate newer
    /// protocol versions that librdkafka before 2.2 handles wrongly (Debian 12's 2.0.2 fails
    /// against Tansu), and 2.2 brought the fixes to idempotent-producer recovery we rely on. Build
    /// a newer one with `deploy/testenv/librdkafka.sh`.
    public static let minimumVersion = "2.2.0"

    /// ``minimumVersion`` as librdkafka's `0xMMmmrr` (pre-release byte dropped).
    static let minimumVersionNumber: Int32 = 0x02_02_00

    /// `rd_kafka_version_str()` of the linked library, e.g. `2.8.0`.
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
