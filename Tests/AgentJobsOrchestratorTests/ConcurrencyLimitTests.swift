import AgentJobsCore
import Foundation
import Testing

@testable import AgentJobsOrchestrator

@Suite("Launch slots")
struct LaunchSlotsTests {
    @Test("runs beyond the limit wait in the order they came and get slots as runs end")
    func firstComeFirstServed() {
        var slots = LaunchSlots(limit: 2)
        let admitted = ["a", "b", "c", "d", "e"].map { slots.enqueue($0) }
        #expect(admitted == [true, true, false, false, false])
        let again = [slots.enqueue("a"), slots.enqueue("c")]
        #expect(again == [true, false], "enqueueing again changes nothing")
        #expect(slots.waiting == ["c", "d", "e"])
        let afterB = slots.release("b")
        #expect(afterB == ["c"])
        let withdrawn = [slots.withdraw("d"), slots.withdraw("d")]
        #expect(withdrawn == [true, false])
        let afterA = slots.release("a")
        #expect(afterA == ["e"])
        #expect(slots.holding == ["c", "e"] && slots.waiting.isEmpty)
        let unknown = slots.release("missing")
        #expect(unknown.isEmpty)
    }

    @Test("a re-attached agent holds a slot over the limit; a newcomer waits behind anyone waiting")
    func occupyAndOrder() {
        var slots = LaunchSlots(limit: 1)
        slots.occupy("running-1")
        slots.occupy("running-2")
        let admitted = slots.enqueue("new")
        #expect(!admitted)
        let afterFirst = slots.release("running-1")
        #expect(afterFirst.isEmpty, "still one over the limit")
        let afterSecond = slots.release("running-2")
        #expect(afterSecond == ["new"])
        // Released while waiting: it leaves the line, and frees nothing.
        let later = slots.enqueue("later")
        let released = slots.release("later")
        #expect(!later && released.isEmpty && slots.waiting.isEmpty)
    }

    @Test("without a limit nothing waits")
    func unlimited() {
        var slots = LaunchSlots(limit: nil)
        let admitted = (0..<1000).map { slots.enqueue("run-\($0)") }
        #expect(admitted.allSatisfy { $0 } && slots.waiting.isEmpty)
    }
}

@Suite("Host concurrency limit", .timeLimit(.minutes(1)))
struct ConcurrencyLimitTests {
    @Test(
        "beyond the limit runs wait on the host in order; a cancel or the queue deadline ends a waiting run without launching it; an ended run frees its slot"
    )
    func waitingRuns() async throws {
        let tests = HostWorkerTests()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-limit-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = tests.dispatch("run-a")
        let canceled = tests.dispatch("run-b")
        let next = tests.dispatch("run-c")
        let consumer = ScriptedConsumer(
            try [first, canceled, next].enumerated().map { try tests.message($1, offset: Int64($0)) })
        let producer = RecordingProducer()
        let driver = GatedDriver()
        driver.releaseLaunches()
        var configuration = HostWorker<ScriptedConsumer>.Configuration()
        configuration.maxConcurrentRuns = 1
        let worker = try tests.worker(directory, consumer, producer, driver, configuration: configuration)
        func has(_ runId: String, _ type: RunEventType) -> Bool {
            producer.events(of: runId).contains { $0.type == type }
        }
        let task = Task { try await worker.run() }
        defer { task.cancel() }
        func until(_ what: String, _ condition: () -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(20)
            while !condition() {
                guard ContinuousClock.now < deadline else {
                    let seen = ["run-a", "run-b", "run-c", "run-d"].map { runId in
                        "\(runId): " + producer.events(of: runId).map(\.type.rawValue).joined(separator: ",")
                    }
                    throw TestTimeout(what: what + " (events: " + seen.joined(separator: "; ") + ")")
                }
                try await Task.sleep(for: .milliseconds(5))
            }
        }

        // One launched; the others accepted (the control plane learns the host has them) and waiting.
        try await until("run-a started, the others accepted") {
            has("run-a", .started) && has("run-b", .accepted) && has("run-c", .accepted)
        }
        #expect(driver.launchesStarted == 1)
        #expect(worker.launchQueue.waiting == 2)

        // The queue deadline applies while waiting (its deadline counted from now, when it is read:
        // on a loaded machine it may even pass before the intake, which also never launches it).
        var expiring = tests.dispatch("run-d")
        expiring.queueDeadline = Date().addingTimeInterval(2)
        consumer.deliver(try tests.message(expiring, offset: 3))
        try await until("run-d timed out") { has("run-d", .timedOut) }
        // A cancel ends a waiting run at once, without launching it.
        consumer.deliver(try tests.cancel("run-b", offset: 10))
        try await until("run-b canceled") { has("run-b", .canceled) }
        #expect(driver.launchesStarted == 1 && !has("run-b", .started) && !has("run-d", .started))

        // run-a ends (canceled, its agent stopped): its slot goes to run-c.
        consumer.deliver(try tests.cancel("run-a", offset: 11))
        try await until("run-c started") { has("run-c", .started) }
        #expect(driver.launchesStarted == 2 && driver.stops == ["run-a"])
        #expect(worker.launchQueue.waiting == 0)
        // The gated driver's agents end only when stopped: run-c too, before the worker stops.
        consumer.deliver(try tests.cancel("run-c", offset: 12))
        try await until("run-c canceled") { has("run-c", .canceled) }
        try await until("run-c's slot released") { worker.launchQueue.holding == 0 }
        task.cancel()
        _ = await task.result
    }
}

extension ConcurrencyLimitTests {
    @Test("after a restart an agent still running holds its slot first; a run accepted before the crash waits for it")
    func restartCountsRunningAgentsFirst() async throws {
        let tests = HostWorkerTests()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-limit-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        // run-a (the lower id) was accepted and not launched; run-b's agent is still running.
        let accepted = tests.dispatch("run-a")
        let running = tests.dispatch("run-b")
        try await tests.journal(accepted, in: directory)
        try await tests.journal(running, in: directory) { record in
            record.phase = .launched
            record.handleID = "agent-run-b"
            record.launchedAt = Date()
            _ = record.record(.started, hostId: tests.hostId, at: Date())
        }
        let consumer = ScriptedConsumer([])
        let producer = RecordingProducer()
        let driver = GatedDriver(running: [running])
        driver.releaseLaunches()
        var configuration = HostWorker<ScriptedConsumer>.Configuration()
        configuration.maxConcurrentRuns = 1
        configuration.backlogSettle = .milliseconds(20)
        let worker = try tests.worker(directory, consumer, producer, driver, configuration: configuration)
        let task = Task { try await worker.run() }
        defer { task.cancel() }
        func until(_ what: String, _ condition: () -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(20)
            while !condition() {
                guard ContinuousClock.now < deadline else { throw TestTimeout(what: what) }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        try await until("run-a waiting") { worker.launchQueue.waiting == 1 }
        #expect(driver.launchesStarted == 0)
        // run-b ends: run-a gets the slot.
        consumer.deliver(try tests.cancel("run-b", offset: 0))
        try await until("run-a started") { producer.events(of: "run-a").contains { $0.type == .started } }
        #expect(driver.launchesStarted == 1 && driver.stops == ["run-b"])
        consumer.deliver(try tests.cancel("run-a", offset: 1))
        try await until("run-a canceled") { producer.events(of: "run-a").contains { $0.type == .canceled } }
        task.cancel()
        _ = await task.result
    }
}

struct TestTimeout: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}
