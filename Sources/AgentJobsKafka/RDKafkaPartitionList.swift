import AgentJobsCore
import CRdKafka
import Foundation
import Logging
import Synchronization

// librdkafka topic-partition lists to and from Swift values.

func topicPartitions(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [TopicPartition] {
    (0..<Int(list.pointee.cnt)).map { index in
        let element = list.pointee.elems[index]
        return TopicPartition(topic: element.topic.map { String(cString: $0) } ?? "", partition: element.partition)
    }
}

func makeList(_ entries: [(TopicPartition, Int64)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    // Never NULL: librdkafka aborts on allocation failure instead of returning NULL.
    let list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t> = rd_kafka_topic_partition_list_new(
        Int32(entries.count))
    for (topicPartition, offset) in entries {
        let element = rd_kafka_topic_partition_list_add(list, topicPartition.topic, topicPartition.partition)
        element?.pointee.offset = offset
    }
    return list
}
