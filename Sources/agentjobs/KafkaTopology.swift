import AgentJobsCore
import AgentJobsKafka
import Logging

/// Topic layout of the distributed shape, created at start-up when missing.
enum KafkaTopology {
    /// The topics with partition counts from the settings.
    static func topics(_ settings: Settings) throws -> [KafkaTopicSpecification] {
        [
            KafkaTopicSpecification(
                name: Topic.dispatch,
                partitionCount: Int32(try settings.integer("AGENTJOBS_DISPATCH_PARTITIONS", default: 12))),
            KafkaTopicSpecification(
                name: Topic.runEvents,
                partitionCount: Int32(try settings.integer("AGENTJOBS_RUN_EVENTS_PARTITIONS", default: 12))),
            KafkaTopicSpecification(name: Topic.hostEvents, partitionCount: 6),
            KafkaTopicSpecification(
                name: Topic.runStatus, partitionCount: 12, configuration: ["cleanup.policy": "compact"]),
            KafkaTopicSpecification(name: Topic.deadLetter, partitionCount: 3),
        ]
    }

    /// Creates missing topics; fails start-up with one line naming the broker setting when the
    /// brokers cannot be reached.
    static func ensure(_ settings: Settings, client: KafkaClientConfiguration, logger: Logger) async throws {
        let admin: KafkaAdmin
        do {
            admin = try KafkaAdmin(configuration: client, logger: logger)
        } catch {
            throw CLIError("\(settings.origin("AGENTJOBS_KAFKA_BROKERS")): \(error)")
        }
        do {
            try await admin.createTopics(try topics(settings), timeout: .seconds(20))
        } catch let error as CLIError {
            await admin.shutdown()
            throw error
        } catch {
            await admin.shutdown()
            throw CLIError(
                "\(settings.origin("AGENTJOBS_KAFKA_BROKERS")): cannot set up topics on \(client.bootstrapServers.joined(separator: ",")): \(error)"
            )
        }
        await admin.shutdown()
    }

    /// The partition count of `topic`, for manual assignment.
    static func partitionCount(of topic: String, _ settings: Settings, client: KafkaClientConfiguration, logger: Logger)
        async throws -> Int32
    {
        do {
            let admin = try KafkaAdmin(configuration: client, logger: logger)
            defer { Task { await admin.shutdown() } }
            guard let count = try await admin.partitionCount(ofTopic: topic, timeout: .seconds(20)) else {
                throw CLIError(
                    "topic \(topic) does not exist yet; start `agentjobs serve` first, which creates the topics")
            }
            return count
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError(
                "\(settings.origin("AGENTJOBS_KAFKA_BROKERS")): cannot read topic \(topic) from \(client.bootstrapServers.joined(separator: ",")): \(error)"
            )
        }
    }
}
