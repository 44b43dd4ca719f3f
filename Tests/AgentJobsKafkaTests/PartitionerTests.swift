import AgentJobsCore
import Testing

@testable import AgentJobsKafka

@Suite("murmur2 partitioner (Java client compatible)")
struct PartitionerTests {
    /// Values from Apache Kafka's own `UtilsTest.testMurmur2` (clients module).
    @Test(
        "murmur2 matches the Java client's Utils.murmur2",
        arguments: [
            ("21", Int32(-973_932_308)),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ]
    )
    func murmur2MatchesJava(key: String, expected: Int32) {
        #expect(KafkaPartitioner.murmur2(Array(key.utf8)) == expected)
    }

    @Test("partition is toPositive(murmur2) % partitionCount, as Java's default partitioner")
    func partitionFollowsJavaFormula() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 4 = 0; % 7 = 5; % 12 = 0
        #expect(KafkaPartitioner.partition(forKey: "21", partitionCount: 4) == 0)
        #expect(KafkaPartitioner.partition(forKey: "21", partitionCount: 7) == Int32(1_173_551_340 % 7))
        // toPositive(-790332482) = 1357151166
        #expect(KafkaPartitioner.partition(forKey: "foobar", partitionCount: 3) == Int32(1_357_151_166 % 3))
        #expect(KafkaPartitioner.partition(forKey: "foobar", partitionCount: 100) == Int32(1_357_151_166 % 100))
        // 479470107 is already positive
        #expect(KafkaPartitioner.partition(forKey: "abc", partitionCount: 10) == 7)
        #expect(KafkaAdmin.partition(forKey: "abc", partitionCount: 10) == 7)
        #expect(KafkaPartitioner.partitionForKey(Array("abc".utf8), 10) == 7)
    }

    @Test("partition never traps on a non-positive partition count")
    func partitionToleratesBadCounts() {
        #expect(KafkaPartitioner.partition(forKey: "x", partitionCount: 0) == 0)
        #expect(KafkaPartitioner.partition(forKey: "x", partitionCount: -3) == 0)
    }

    @Test("murmur2 agrees with librdkafka's murmur2 partitioner on many keys and lengths")
    func murmur2AgreesWithLibrdkafka() {
        var generator = SystemRandomNumberGenerator()
        for length in 1...40 {
            for _ in 0..<25 {
                let key = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                for count: Int32 in [1, 3, 12, 64] {
                    #expect(
                        KafkaPartitioner.partition(forKey: key, partitionCount: count)
                            == librdkafkaMurmur2Partition(key: key, partitionCount: count),
                        "key \(key) count \(count)"
                    )
                }
            }
        }
        for host in (0..<200).map({ "host-\($0).example.internal" }) {
            #expect(
                KafkaPartitioner.partition(forKey: host, partitionCount: 24)
                    == librdkafkaMurmur2Partition(key: Array(host.utf8), partitionCount: 24)
            )
        }
    }
}
