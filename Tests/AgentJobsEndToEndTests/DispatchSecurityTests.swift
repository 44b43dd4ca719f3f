import AgentJobsCore
import AgentJobsKafka
import AgentJobsTestSupport
import Foundation
import Testing

/// The orchestrator against dispatch commands injected straight into `agentjobs.dispatch`: the
/// test holds the control plane's signing key (from the serve data dir), so it can repeat a genuine
/// dispatch and forge others.
@Suite("Dispatch intake end to end", .serialized, .enabled(if: EndToEnd.shouldRun, EndToEnd.skipReason))
struct DispatchSecurityTests {
    static func signingKey(_ cluster: Cluster) throws -> DispatchSigningKey {
        let path = cluster.directory.appendingPathComponent("serve/dispatch-signing.key").path
        let text = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return try DispatchSigningKey(rawRepresentation: Array(try #require(Data(base64Encoded: text))))
    }

    /// A dispatch message for `run` as the relay would publish it (`sequence` picks the message id).
    static func dispatch(_ run: Run, sequence: Int64, signedWith key: DispatchSigningKey, keyedTo host: String? = nil)
        throws
        -> OutgoingMessage
    {
        let row = OutboxMessage(
            sequence: sequence, topic: Topic.dispatch, key: host ?? run.hostId, runId: run.id, type: RunDispatch.type,
            payload: try WireJSON.encode(RunDispatch(run: run)), createdAt: Date())
        return try row.wireMessage(signedWith: key)
    }

    static func run(_ json: JSONValue, host: String) throws -> Run {
        Run(
            id: try #require(json["id"]?.string), jobId: try #require(json["jobId"]?.string), jobName: "injected",
            jobVersion: 1, hostId: host, agentType: .datahealth, parameters: .file(fileName: "checks.yaml"),
            timeoutSeconds: 60, queueTimeoutSeconds: 600, trigger: .api, queuedAt: Date())
    }

    @Test("the same dispatch delivered three more times starts one agent")
    func repeatedDispatch() async throws {
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "repeat")
            let key = try Self.signingKey(cluster)
            let job = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"sleep-2"}"#)
            let runId = try await cluster.api.trigger(job)
            let run = try Self.run(try await cluster.api.call(.GET, "/runs/\(runId)", expect: 200), host: host)
            let copy = try Self.dispatch(run, sequence: 1, signedWith: key)
            try await AggregatorTests.withProducer(cluster) { producer in
                try await AggregatorTests.send(producer, [copy, copy, copy])
            }
            try await cluster.waitForStatus(runId, "succeeded", timeout: .seconds(30))
            let output = try #require(cluster.orchestrators[host]).capturedOutput
            #expect(output.components(separatedBy: "agent started").count - 1 == 1, "one launch:\n\(output)")
            #expect(output.components(separatedBy: "dispatch already handled").count - 1 >= 3, "\(output)")
        }
    }

    @Test("forged dispatches and dispatches for another host are refused, dead-lettered and never launched")
    func forgedDispatch() async throws {
        try await Cluster.run { cluster in
            let host = try await cluster.addHost(name: "target")
            let other = try await cluster.addHost(name: "other", startOrchestrator: false)
            let key = try Self.signingKey(cluster)
            // Runs on a host with no orchestrator: only the injected copies could start them.
            let job = try await cluster.createJob(hostId: other)
            let otherRun = try Self.run(
                try await cluster.api.call(.GET, "/runs/\(try await cluster.api.trigger(job))", expect: 200),
                host: other)
            // 1. A genuine dispatch for the other host, re-keyed to the target host's partition.
            let rekeyed = try Self.dispatch(otherRun, sequence: 1, signedWith: key, keyedTo: host)
            // 2. A dispatch for the target host signed with a key that is not the control plane's.
            var forgedRun = otherRun
            forgedRun.id = Identifier.make("run")
            forgedRun.hostId = host
            let forged = try Self.dispatch(forgedRun, sequence: 2, signedWith: DispatchSigningKey())
            // 3. The same forged dispatch with the genuine signature of another message pasted in.
            var pasted = forged
            let genuine = try Self.dispatch(otherRun, sequence: 3, signedWith: key)
            pasted.headers = pasted.headers.map { header in
                header.key == WireHeader.signature ? genuine.headers.first { $0.key == WireHeader.signature }! : header
            }
            try await AggregatorTests.withProducer(cluster) { producer in
                try await AggregatorTests.send(producer, [rekeyed, forged, pasted])
            }
            let orchestrator = try #require(cluster.orchestrators[host])
            _ = try await orchestrator.waitForOutput(timeout: .seconds(20)) { output in
                output.components(separatedBy: "refusing a dispatch message").count - 1 >= 3 ? true : nil
            }
            let output = orchestrator.capturedOutput
            #expect(output.contains("bad_signature"))
            #expect(!output.contains("agent started"), "a refused dispatch was launched:\n\(output)")
            #expect(try await cluster.api.call(.GET, "/runs/\(otherRun.id)", expect: 200)["status"]?.string == "queued")
            // They are in the dead-letter topic with the reason.
            let letters = try await DeadLetters.read(brokers: cluster.brokers, key: host, from: Topic.dispatch) {
                $0.count >= 3
            }
            #expect(
                letters.filter { $0.contains("bad_signature") || $0.contains("wrong_host") }.count >= 3, "\(letters)")
        }
    }
}

/// Reads the reasons of dead letters with a given key (the original message's key) that were read
/// from `topic`, until `enough` says so.
enum DeadLetters {
    static func read(
        brokers: String, key: String, from topic: String, until enough: @escaping @Sendable ([String]) -> Bool
    ) async throws -> [String] {
        let client = KafkaClientConfiguration(bootstrapServers: RequiredService.brokerList(brokers))
        let partition = KafkaPartitioner.partition(forKey: key, partitionCount: 3)
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                client: client,
                subscription: .assignment(
                    groupID: "e2e-dead-letters-\(UUID().uuidString.prefix(8))",
                    partitions: [TopicPartition(topic: Topic.deadLetter, partition: partition)],
                    keyFilter: Array(key.utf8))),
            logger: .init(label: "e2e.dead-letters"))
        let running = Task { try await consumer.run() }
        defer { running.cancel() }
        return try await withThrowingTaskGroup(of: [String]?.self) { group in
            group.addTask {
                var reasons: [String] = []
                for try await message in consumer.messages {
                    // Only what was refused on `topic`: clusters of other tests on the same broker
                    // dead-letter this host's heartbeats as coming from a host they do not know.
                    guard message.header(WireHeader.originalTopic)?.stringValue == topic else { continue }
                    reasons.append(message.header(WireHeader.deadLetterReason)?.stringValue ?? "")
                    if enough(reasons) { break }
                }
                return reasons
            }
            group.addTask {
                try await Task.sleep(for: .seconds(30))
                return nil
            }
            defer { group.cancelAll() }
            guard let reasons = try await group.next() ?? nil else {
                throw TestAPIError("not the dead letters expected with key \(key) from \(topic) within 30 s")
            }
            return reasons
        }
    }
}
