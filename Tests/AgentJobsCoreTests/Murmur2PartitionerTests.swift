import AgentJobsCore
import Testing

@Suite("murmur2 partitioner in Core (shared by both transports)")
struct Murmur2PartitionerTests {
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
        #expect(Murmur2Partitioner.murmur2(Array(key.utf8)) == expected)
    }

    @Test("partition is toPositive(murmur2) % partitionCount and never traps on bad counts")
    func partitionFollowsJavaFormula() {
        // toPositive(-790332482) = 1357151166
        #expect(Murmur2Partitioner.partition(forKey: "foobar", partitionCount: 100) == Int32(1_357_151_166 % 100))
        #expect(Murmur2Partitioner.partitionForKey(Array("abc".utf8), 10) == 7)
        #expect(Murmur2Partitioner.partition(forKey: "x", partitionCount: 0) == 0)
    }
}
