import AgentJobsCore
import Foundation
import Testing

@Suite("Retry policy")
struct RetryPolicyTests {
    static func parse(_ json: String, merging current: RetryPolicy? = nil) throws -> RetryPolicy? {
        try RetryPolicy.parse(try JSONParser.parse(json), merging: current)
    }

    @Test("defaults fill what a request leaves out; the stored form reads back the same")
    func defaults() throws {
        let policy = try #require(try Self.parse(#"{"maxAttempts": 3}"#))
        #expect(policy == RetryPolicy(maxAttempts: 3, initialDelaySeconds: 60, backoffFactor: 2, maxDelaySeconds: 3600))
        #expect(policy.on == [.failed, .timedOut])
        #expect(
            policy.jsonText
                == #"{"backoffFactor":2,"initialDelaySeconds":60,"maxAttempts":3,"maxDelaySeconds":3600,"on":["failed","timed_out"]}"#
        )
        #expect(RetryPolicy.parseStored(policy.jsonText) == policy)
        let fractional = try #require(try Self.parse(#"{"maxAttempts": 2, "backoffFactor": 1.5, "on": ["timed_out"]}"#))
        #expect(RetryPolicy.parseStored(fractional.jsonText) == fractional)
        #expect(
            try JSONParser.parse(fractional.jsonText)
                == JSONParser.parse(String(decoding: try JSONEncoder().encode(fractional), as: UTF8.self)))
    }

    @Test("delays grow by the factor from the first delay and stop at the maximum")
    func delays() {
        let policy = RetryPolicy(maxAttempts: 10, initialDelaySeconds: 30, backoffFactor: 2, maxDelaySeconds: 200)
        #expect((2...6).map(policy.delaySeconds(beforeAttempt:)) == [30, 60, 120, 200, 200])
        let flat = RetryPolicy(maxAttempts: 4, initialDelaySeconds: 0, backoffFactor: 10, maxDelaySeconds: 0)
        #expect((2...4).map(flat.delaySeconds(beforeAttempt:)) == [0, 0, 0])
        let huge = RetryPolicy(maxAttempts: 10, initialDelaySeconds: 86_400, backoffFactor: 10, maxDelaySeconds: 86_400)
        #expect(huge.delaySeconds(beforeAttempt: 10) == 86_400)
    }

    @Test(
        "a bad policy is refused naming its field",
        arguments: [
            (#"{}"#, "retry.maxAttempts"), (#"{"maxAttempts": 1}"#, "retry.maxAttempts"),
            (#"{"maxAttempts": 11}"#, "retry.maxAttempts"), (#"{"maxAttempts": 2.5}"#, "retry.maxAttempts"),
            (#"{"maxAttempts": 3, "backoffFactor": 0.5}"#, "retry.backoffFactor"),
            (#"{"maxAttempts": 3, "backoffFactor": "2"}"#, "retry.backoffFactor"),
            (#"{"maxAttempts": 3, "initialDelaySeconds": -1}"#, "retry.initialDelaySeconds"),
            (#"{"maxAttempts": 3, "initialDelaySeconds": 100, "maxDelaySeconds": 10}"#, "retry.maxDelaySeconds"),
            (#"{"maxAttempts": 3, "on": []}"#, "retry.on"), (#"{"maxAttempts": 3, "on": ["canceled"]}"#, "retry.on[0]"),
            (#"{"maxAttempts": 3, "onn": ["failed"]}"#, "retry.onn"), (#"[3]"#, "retry"),
            (#"{"maxAttempts": 3, "on": ["failed", "failed"]}"#, "retry.on[1]"),
        ])
    func refused(json: String, field: String) throws {
        do {
            _ = try Self.parse(json)
            Issue.record("\(json) was accepted")
        } catch let error as ValidationError {
            #expect(error.field == field, "\(json): \(error)")
        }
    }

    @Test("an edit changes the fields it names; null turns retries off")
    func patch() throws {
        let job = JobDefinition(
            name: "n", hostId: "h", agentType: .datahealth, parameters: .file(fileName: "f"),
            retry: RetryPolicy(maxAttempts: 3))
        let edited = try job.applyingPatch(try JSONParser.parse(#"{"retry": {"maxAttempts": 5}}"#))
        #expect(edited.retry == RetryPolicy(maxAttempts: 5))
        #expect(edited.changedFields(from: job) == ["retry"])
        #expect(try job.applyingPatch(try JSONParser.parse(#"{"retry": null}"#)).retry == nil)
        #expect(try job.applyingPatch(try JSONParser.parse(#"{"name": "m"}"#)).retry == job.retry)
    }

    @Test("the next attempt copies the run, counts one more and is due after its delay")
    func nextAttempt() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var run = Run(
            id: "run_1", jobId: "job_1", jobName: "n", jobVersion: 4, hostId: "host_1", agentType: .datahealth,
            parameters: .file(fileName: "f"), timeoutSeconds: 60, queueTimeoutSeconds: 600, status: .failed,
            trigger: .schedule, scheduledAt: now, queuedAt: now, triggeredBy: .schedule,
            retryPolicy: RetryPolicy(maxAttempts: 2, initialDelaySeconds: 7))
        let next = run.nextAttempt(retryable: true, now: now)
        #expect(next?.attempt == 2)
        #expect(next?.retryOf == "run_1")
        #expect(next?.scheduledAt == now)
        #expect(next?.trigger == .schedule)
        #expect(next?.jobVersion == 4)
        #expect(next?.status == .queued)
        #expect(next?.heldUntil == now.addingTimeInterval(7))
        #expect(next.flatMap { $0.nextAttempt(retryable: true, now: now) } == nil, "a queued run has no next attempt")
        #expect(run.nextAttempt(retryable: false, now: now) == nil)
        run.attempt = 2
        #expect(run.nextAttempt(retryable: true, now: now) == nil, "the last attempt")
    }

    @Test("an end is retryable only when the host saw the agent end, or never launched it; never a rejection")
    func retryableEnds() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var run = Run(
            id: "run_1", jobId: "job_1", jobName: "n", jobVersion: 1, hostId: "host_1", agentType: .datahealth,
            parameters: .file(fileName: "f"), timeoutSeconds: 60, queueTimeoutSeconds: 600, status: .failed,
            trigger: .api, queuedAt: now)
        func event(_ type: RunEventType, exit: Int?) -> RunLifecycleEvent {
            RunLifecycleEvent(
                type: type, runId: "run_1", jobId: "job_1", hostId: "host_1", dispatchEpoch: 1, sequence: 2, at: now,
                exitCode: exit)
        }
        #expect(event(.rejected, exit: nil).endIsRetryable(for: run) == false)
        #expect(event(.timedOut, exit: nil).endIsRetryable(for: run), "never launched: its queue deadline passed")
        run.startedAt = now
        #expect(event(.failed, exit: 2).endIsRetryable(for: run))
        #expect(event(.timedOut, exit: 143).endIsRetryable(for: run))
        #expect(event(.failed, exit: nil).endIsRetryable(for: run) == false, "the host lost track of the agent")
        #expect(event(.canceled, exit: 143).endIsRetryable(for: run) == false)
        #expect(run.endByControlPlaneIsRetryable == false)
        run.heldUntil = now
        #expect(run.endByControlPlaneIsRetryable)
    }

    @Test("a stored policy reads back leniently: a field a later release added is ignored")
    func lenientStoredForm() {
        let stored =
            #"{"maxAttempts":4,"initialDelaySeconds":5,"backoffFactor":1.5,"maxDelaySeconds":60,"on":["timed_out"],"jitter":0.2}"#
        #expect(
            RetryPolicy.parseStored(stored)
                == RetryPolicy(
                    maxAttempts: 4, initialDelaySeconds: 5, backoffFactor: 1.5, maxDelaySeconds: 60, on: [.timedOut]))
        #expect(RetryPolicy.parseStored("[]") == nil)
    }
}
