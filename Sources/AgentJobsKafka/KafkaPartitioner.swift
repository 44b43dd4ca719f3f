import AgentJobsCore

/// Kafka's default key→partition mapping, identical to the Java client's
/// (`Utils.toPositive(Utils.murmur2(key)) % partitionCount`) and to librdkafka's
/// `murmur2_random` partitioner for non-empty keys.
///
/// The implementation is `AgentJobsCore.Murmur2Partitioner`, which the embedded transport
/// shares; this name stays so that Kafka code reads as Kafka code.
public enum KafkaPartitioner {
    /// The partition of `key` among `partitionCount` partitions.
    /// - Parameters:
    ///   - key: The key bytes (for string keys, their UTF-8 encoding).
    ///   - partitionCount: The topic's partition count. Values below 1 are treated as 1, so the
    ///     function never traps on input.
    /// - Returns: A partition index in `0..<max(partitionCount, 1)`.
    public static func partition(forKey key: some Collection<UInt8>, partitionCount: Int32) -> Int32 {
        Murmur2Partitioner.partition(forKey: key, partitionCount: partitionCount)
    }

    /// The partition of the UTF-8 encoding of `key`. See ``partition(forKey:partitionCount:)``.
    public static func partition(forKey key: String, partitionCount: Int32) -> Int32 {
        Murmur2Partitioner.partition(forKey: key, partitionCount: partitionCount)
    }

    /// ``partition(forKey:partitionCount:)`` as the transport-neutral function type.
    public static let partitionForKey: PartitionForKey = Murmur2Partitioner.partitionForKey

    /// MurmurHash2 (32-bit) with Kafka's seed `0x9747b28c`, as a signed value like Java's `int`.
    /// - Parameter data: The bytes to hash.
    /// - Returns: The hash, bit-for-bit equal to `org.apache.kafka.common.utils.Utils.murmur2`.
    public static func murmur2(_ data: some Collection<UInt8>) -> Int32 {
        Murmur2Partitioner.murmur2(data)
    }
}
