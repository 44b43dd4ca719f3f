import AgentJobsCore
import AgentJobsLifecycle
import Foundation
import Logging
import Testing

@testable import AgentJobsTelemetry

@Suite("Structured logs and metric labels")
struct TelemetryTests {
    @Test("a JSON log line is one object: time, level, logger, message, then every metadata key as a string")
    func jsonLine() throws {
        let line = JSONLogHandler.line(
            time: Date(timeIntervalSince1970: 1_765_000_000.1234), level: .warning, logger: "agentjobs.aggregator",
            message: "dead-lettering a run event\nsecond line \"quoted\"",
            metadata: [
                "run_id": "run_1", "message": "a key named like a fixed member", "nested": ["a": "b"],
                "list": ["x", "y"], "control": "\u{1}",
            ])
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(line.dropLast().allSatisfy { $0 != UInt8(ascii: "\n") }, "one line")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: String])
        #expect(object["time"] == "2025-12-06T05:46:40.123Z")
        #expect(object["level"] == "warning")
        #expect(object["logger"] == "agentjobs.aggregator")
        #expect(object["message"] == "dead-lettering a run event\nsecond line \"quoted\"")
        #expect(object["run_id"] == "run_1")
        #expect(object["meta_message"] == "a key named like a fixed member")
        #expect(object["nested"] == #"["a": "b"]"#)
        #expect(object["list"] == #"["x", "y"]"#)
        #expect(object["control"] == "\u{1}")
    }

    @Test("AGENTJOBS_LOG_FORMAT: plain by default, json in any case, anything else refused by name")
    func logFormatSetting() throws {
        #expect(try LogFormat.from(environment: [:]) == .plain)
        #expect(try LogFormat.from(environment: ["AGENTJOBS_LOG_FORMAT": ""]) == .plain)
        #expect(try LogFormat.from(environment: ["AGENTJOBS_LOG_FORMAT": "JSON"]) == .json)
        let error = #expect(throws: LogFormatError.self) {
            try LogFormat.from(environment: ["AGENTJOBS_LOG_FORMAT": "xml"])
        }
        #expect(error?.description == "AGENTJOBS_LOG_FORMAT: 'xml' is not a log format; use plain or json")
    }

    @Test("a dead letter's reason label is its code, never the ids after it; an unknown code is 'other'")
    func deadLetterReasonLabel() {
        #expect(TransportMetrics.code(of: "bad_signature: event of host_1 not signed by it") == "bad_signature")
        #expect(TransportMetrics.code(of: "unknown_run: no run run_x") == "unknown_run")
        #expect(TransportMetrics.code(of: "missing_header") == "missing_header")
        #expect(TransportMetrics.code(of: "run_abc: made up") == "other")
        #expect(TransportMetrics.code(of: "") == "other")
    }

    @Test("a partition revoked from a consumer is reported at 0 once, not at its last lag")
    func revokedPartitionLag() {
        let group = "test-\(UUID().uuidString)"
        let first = TopicPartition(topic: "agentjobs.run-events", partition: 0)
        let second = TopicPartition(topic: "agentjobs.run-events", partition: 1)
        #expect(ConsumerLagMetrics.withRevoked(group: group, [first: 7, second: 3]) == [first: 7, second: 3])
        #expect(ConsumerLagMetrics.withRevoked(group: group, [second: 4]) == [first: 0, second: 4])
        #expect(ConsumerLagMetrics.withRevoked(group: group, [second: 5]) == [second: 5])
        #expect(ConsumerLagMetrics.withRevoked(group: group, [:]) == [second: 0])
        #expect(ConsumerLagMetrics.withRevoked(group: "other-\(group)", [first: 1]) == [first: 1])
    }

    @Test("abandoningOnCancel returns the operation's result, or nil at once when the caller is cancelled")
    func abandonOnCancel() async throws {
        #expect(await abandoningOnCancel { 42 } == 42)
        let hung = Task {
            await abandoningOnCancel { () async -> Int in
                // A send the broker never acknowledges (ends on its own much later).
                try? await Task.sleep(for: .seconds(30))
                return 1
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        let start = ContinuousClock.now
        hung.cancel()
        #expect(await hung.value == nil)
        // Before the operation itself ends (30 s); not a timing bound (a busy machine delays it).
        #expect(ContinuousClock.now - start < .seconds(25))
        // Cancelled before it starts: nil, without running into the operation's wait.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await abandoningOnCancel { () async -> Int in
                try? await Task.sleep(for: .seconds(30))
                return 1
            }
        }
        #expect(await early.value == nil)
    }
}
