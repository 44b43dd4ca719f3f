/// Kafka's default key→partition mapping, identical to the Java client's
/// (`Utils.toPositive(Utils.murmur2(key)) % partitionCount`) and to librdkafka's
/// `murmur2_random` partitioner for non-empty keys.
///
/// It lives in Core, in pure Swift, because both transports must place a key on the same
/// partition: the Kafka producer (through librdkafka), the embedded SQLite log, and an
/// orchestrator that computes its host's partition before any client exists.
public enum Murmur2Partitioner {
    /// The partition of `key` among `partitionCount` partitions.
    /// - Parameters:
    ///   - key: The key bytes (for string keys, their UTF-8 encoding).
    ///   - partitionCount: The topic's partition count. Values below 1 are treated as 1, so the
    ///     function never traps on input.
    /// - Returns: A partition index in `0..<max(partitionCount, 1)`.
    public static func partition(forKey key: some Collection<UInt8>, partitionCount: Int32) -> Int32 {
        let count = max(partitionCount, 1)
        return (murmur2(key) & 0x7fff_ffff) % count
    }

    /// The partition of the UTF-8 encoding of `key` (see the byte-key overload).
    public static func partition(forKey key: String, partitionCount: Int32) -> Int32 {
        partition(forKey: Array(key.utf8), partitionCount: partitionCount)
    }

    /// ``partition(forKey:partitionCount:)-(some Collection<UInt8>,_)`` as the transport-neutral
    /// function type.
    public static let partitionForKey: PartitionForKey = { key, count in
        partition(forKey: key, partitionCount: count)
    }

    /// MurmurHash2 (32-bit) with Kafka's seed `0x9747b28c`, as a signed value like Java's `int`.
    /// - Parameter data: The bytes to hash.
    /// - Returns: The hash, bit-for-bit equal to `org.apache.kafka.common.utils.Utils.murmur2`.
    public static func murmur2(_ data: some Collection<UInt8>) -> Int32 {
        let bytes = Array(data)
        let length = bytes.count
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: length)

        let blocks = length / 4
        for block in 0..<blocks {
            let i = block * 4
            var k =
                UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16
                | UInt32(bytes[i + 3]) << 24
            k &*= m
            k ^= k >> r
            k &*= m
            h &*= m
            h ^= k
        }

        let tail = length & ~3
        switch length % 4 {
        case 3:
            h ^= UInt32(bytes[tail + 2]) << 16
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h &*= m
        case 2:
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h &*= m
        case 1:
            h ^= UInt32(bytes[tail])
            h &*= m
        default:
            break
        }

        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }
}
