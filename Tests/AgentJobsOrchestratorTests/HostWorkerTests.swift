import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@testable import AgentJobsOrchestrator

/// `HostWorker` in process with an in-memory transport and a driver that counts launches: the
/// exactly-once rules of the dispatch intake, across a restart.
@Suite("Host worker", .timeLimit(.minutes(1)))
struct HostWorkerTests {
    /// Sets a flag and returns whether it was set before (for `Mutex.withLock`).
    static func setOnce(_ flag: inout Bool) -> Bool {
        defer { flag = true }
        return flag
    }

    let hostId = "host-1"
    let signingKey = DispatchSigningKey()

    func dispatch(_ runId: String) -> RunDispatch {
        RunDispatch(
            run: Run(
                id: runId, jobId: "job-\(runId)", jobName: "job", jobVersion: 1, hostId: hostId,
                agentType: .datahealth, parameters: .file(fileName: "data.csv"), timeoutSeconds: 60,
                queueTimeoutSeconds: 600, trigger: .api, queuedAt: Date()))
    }

    func message(_ dispatch: RunDispatch, offset: Int64) throws -> IncomingMessage {
        try message(type: RunDispatch.type, runId: dispatch.runId, payload: WireJSON.encode(dispatch), offset: offset)
    }

    func message(_ cancel: RunCancel, offset: Int64) throws -> IncomingMessage {
        try message(type: RunCancel.type, runId: cancel.runId, payload: WireJSON.encode(cancel), offset: offset)
    }

    func cancel(_ runId: String, offset: Int64) throws -> IncomingMessage {
        try message(RunCancel(runId: runId, hostId: hostId, dispatchEpoch: 1, requestedAt: Date()), offset: offset)
    }

    /// Journals `dispatch` as the intake does (accepted), then `change`, as a worker that crashed left it.
    func journal(_ dispatch: RunDispatch, in directory: URL, then change: (inout RunRecord) -> Void = { _ in })
        async throws
    {
        var record = RunRecord(runId: dispatch.runId, dispatch: dispatch)
        _ = record.record(.accepted, hostId: hostId, at: Date())
        change(&record)
        try await RunJournal(dataDirectory: directory).save(record)
    }

    func message(type: String, runId: String, payload: [UInt8], offset: Int64) throws -> IncomingMessage {
        let outgoing = try OutboxMessage(
            sequence: offset + 1, topic: Topic.dispatch, key: hostId, runId: runId, type: type, payload: payload,
            createdAt: Date()
        ).wireMessage(signedWith: signingKey)
        return IncomingMessage(
            topic: outgoing.topic, partition: 0, offset: offset, key: outgoing.key, value: outgoing.value,
            headers: outgoing.headers)
    }

    func worker(
        _ directory: URL, _ consumer: ScriptedConsumer, _ producer: RecordingProducer, _ driver: any AgentDriver,
        command: [String] = ["/bin/true"], configuration: HostWorker<ScriptedConsumer>.Configuration = .init(),
        clock: @escaping @Sendable () -> Date = { Date() }
    ) throws -> HostWorker<ScriptedConsumer> {
        let identity = HostIdentity(
            controlPlaneURL: "in-process", hostId: hostId, name: hostId, credential: "credential",
            signingPublicKey: signingKey.verifier.base64, managedAgents: [.datahealth])
        return try HostWorker(
            identity: identity, consumer: consumer, producer: producer, driver: driver,
            journal: try RunJournal(dataDirectory: directory),
            makeLaunch: { dispatch, runDirectory in
                AgentLaunch(
                    runId: dispatch.runId, jobId: dispatch.jobId, hostId: dispatch.hostId,
                    dispatchEpoch: dispatch.dispatchEpoch, agentType: dispatch.agentType, program: command[0],
                    arguments: Array(command.dropFirst()), environment: [:], logDirectory: runDirectory.path)
            },
            summarize: { _, _, _ in "" }, configuration: configuration, clock: clock, logger: testLogger("host-worker"))
    }

    /// Runs `worker` until `done` holds (checked every few milliseconds), then cancels it.
    func run(_ worker: HostWorker<ScriptedConsumer>, until done: @escaping @Sendable () -> Bool) async throws {
        let task = Task { try await worker.run() }
        while !done() {
            try await Task.sleep(for: .milliseconds(5))
        }
        task.cancel()
        _ = await task.result
    }

    @Test("a dispatch publishes accepted, started and succeeded in sequence order and is committed once recorded")
    func dispatchPublishesItsEventsInOrder() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let consumer = ScriptedConsumer([try message(dispatch("run-1"), offset: 0)])
        let producer = RecordingProducer()
        let driver = CountingDriver()
        try await run(try worker(directory, consumer, producer, driver)) {
            producer.events(of: "run-1").contains { $0.type == .succeeded } && !consumer.committed.isEmpty
                && !driver.releases.isEmpty
        }
        #expect(driver.launches == ["run-1"])
        // The driver forgets the agent only after its end is journaled.
        #expect(driver.releases == ["run-1"])
        // First publication of each event, in the order the transport received them.
        var firstSeen: [Int] = []
        for event in producer.events(of: "run-1") where !firstSeen.contains(event.sequence) {
            firstSeen.append(event.sequence)
        }
        #expect(firstSeen == [1, 2, 3])
        #expect(
            firstSeen.compactMap { sequence in producer.events(of: "run-1").first { $0.sequence == sequence }?.type }
                == [.accepted, .started, .succeeded])
        #expect(consumer.committed == [MessagePosition(topic: Topic.dispatch, partition: 0, offset: 0)])
    }

    @Test("a dispatch recorded before a crash is launched once after the restart, though it is delivered again")
    func recordedDispatchIsLaunchedOnceAfterRestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        // The intake's durable record of the dispatch, and then the crash: not launched, offset not
        // committed, `accepted` not published.
        let recorded = dispatch("run-2")
        try await journal(recorded, in: directory)

        let consumer = ScriptedConsumer([try message(recorded, offset: 0), try message(recorded, offset: 1)])
        let producer = RecordingProducer()
        let driver = CountingDriver()
        try await run(try worker(directory, consumer, producer, driver)) {
            producer.events(of: "run-2").contains { $0.type == .succeeded } && consumer.committed.count == 2
        }
        #expect(driver.launches == ["run-2"])
        #expect(producer.events(of: "run-2").first?.type == .accepted)

        // Delivered once more to a third incarnation: the finished run is never launched again.
        let again = ScriptedConsumer([try message(recorded, offset: 2)])
        try await run(try worker(directory, again, producer, driver)) { again.committed.count == 1 }
        #expect(driver.launches == ["run-2"])
    }
}

extension HostWorkerTests {
    @Test("a run accepted before a crash whose cancel waits in the backlog is canceled without being launched")
    func acceptedRunCanceledInBacklogIsNeverLaunched() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        // Journaled (accepted) just before the crash, its offset committed; the cancel came while the
        // host was down, and is the first thing the restarted host reads.
        let recorded = dispatch("run-b")
        try await journal(recorded, in: directory)
        let consumer = ScriptedConsumer([try cancel("run-b", offset: 1)])
        let producer = RecordingProducer()
        let driver = CountingDriver()
        try await run(try worker(directory, consumer, producer, driver)) {
            producer.events(of: "run-b").contains { $0.type == .canceled }
        }
        #expect(driver.launches.isEmpty)
    }

    @Test("the first batch waits for the backlog until the consumer has caught up, not for a quiet period")
    func firstBatchWaitsUntilCaughtUp() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = HostWorker<ScriptedConsumer>.Configuration()
        configuration.backlogSettle = .seconds(60)
        // The cancel behind the dispatch comes in a later fetch; the consumer has caught up after it.
        let consumer = ScriptedConsumer([try message(dispatch("run-1"), offset: 0)])
        consumer.setCaughtUp(false)
        let cancelMessage = try cancel("run-1", offset: 1)
        let producer = RecordingProducer()
        let driver = CountingDriver()
        let started = ContinuousClock.now
        let delivered = Mutex(false)
        try await run(try worker(directory, consumer, producer, driver, configuration: configuration)) {
            if ContinuousClock.now - started > .milliseconds(300), !delivered.withLock({ Self.setOnce(&$0) }) {
                consumer.deliver(cancelMessage)
                consumer.setCaughtUp(true)
            }
            return producer.events(of: "run-1").contains { $0.type == .canceled }
        }
        #expect(driver.launches.isEmpty)
        #expect(ContinuousClock.now - started < .seconds(30))

        // Caught up from the start: launched without waiting out a quiet period.
        let caughtUp = ScriptedConsumer([try message(dispatch("run-2"), offset: 2)])
        caughtUp.setCaughtUp(true)
        let restarted = ContinuousClock.now
        try await run(try worker(directory, caughtUp, producer, driver, configuration: configuration)) {
            driver.launches == ["run-2"]
        }
        #expect(ContinuousClock.now - restarted < .seconds(30))
    }

    @Test("a launch that fails with a transient error is tried again until it starts; a refusal is rejected at once")
    func transientLaunchFailuresAreRetried() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let unanswered = OrchestratorError(code: .dockerTimedOut, message: "the Docker daemon did not answer")
        let noProcesses = OrchestratorError(
            code: .launchFailed, message: "could not start", detail: "errno \(EAGAIN)", errorNumber: EAGAIN)
        let refused = OrchestratorError(code: .launchFailed, message: "Docker refused to create the agent container")
        #expect(unanswered.isTransient && noProcesses.isTransient && !refused.isTransient)

        let consumer = ScriptedConsumer([try message(dispatch("run-1"), offset: 0)])
        let producer = RecordingProducer()
        let driver = CountingDriver(failing: [unanswered, noProcesses])
        let started = ContinuousClock.now
        try await run(try worker(directory, consumer, producer, driver)) {
            producer.events(of: "run-1").contains { $0.type == .succeeded }
        }
        #expect(driver.attempts == ["run-1", "run-1", "run-1"])
        #expect(driver.launches == ["run-1"])
        // Waited 1 s, then 2 s.
        #expect(ContinuousClock.now - started >= .seconds(3))
        #expect(!producer.events(of: "run-1").contains { $0.type == .rejected })

        // A failed attempt that started the agent all the same: the retry adopts it.
        let unconfirmed = CountingDriver(failing: [unanswered], failedLaunchesStart: true)
        let third = ScriptedConsumer([try message(dispatch("run-3"), offset: 2)])
        try await run(try worker(directory, third, producer, unconfirmed)) {
            producer.events(of: "run-3").contains { $0.type == .succeeded }
        }
        #expect(unconfirmed.attempts == ["run-3"])
        #expect(unconfirmed.launches == ["run-3"])

        let refusing = CountingDriver(failing: [refused])
        let again = ScriptedConsumer([try message(dispatch("run-2"), offset: 1)])
        try await run(try worker(directory, again, producer, refusing)) {
            producer.events(of: "run-2").contains { $0.type == .rejected }
        }
        #expect(refusing.attempts == ["run-2"])
    }

    @Test("transient launch failures end at the queue deadline as timed out, and a cancel meanwhile ends the run")
    func transientLaunchFailuresEndAtTheQueueDeadlineOrACancel() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let unanswered = OrchestratorError(code: .dockerUnavailable, message: "cannot reach the Docker daemon")
        let consumer = ScriptedConsumer([try message(dispatch("run-1"), offset: 0)])
        let producer = RecordingProducer()
        let driver = CountingDriver(failing: Array(repeating: unanswered, count: 100))
        // The host's clock passes the run's queue deadline (600 s) once two attempts have failed:
        // the third is not tried. (A clock of the test's, not a short deadline: on a loaded machine
        // a short one passes before the first attempt.)
        let started = Date()
        let clock: @Sendable () -> Date = {
            driver.attempts.count >= 2 ? started.addingTimeInterval(3600) : Date()
        }
        try await run(try worker(directory, consumer, producer, driver, clock: clock)) {
            producer.events(of: "run-1").contains { $0.type == .timedOut }
        }
        #expect(driver.attempts.count == 2)
        let ended = producer.events(of: "run-1").last
        #expect(ended?.errorSummary?.contains("transient error") == true)
        #expect(ended?.errorSummary?.contains("cannot reach the Docker daemon") == true)
        #expect(driver.launches.isEmpty)

        // A cancel while a failure is waited out: canceled, never launched.
        let failing = CountingDriver(failing: Array(repeating: unanswered, count: 100))
        let cancelMessage = try cancel("run-2", offset: 2)
        let again = ScriptedConsumer([try message(dispatch("run-2"), offset: 1)])
        let delivered = Mutex(false)
        try await run(try worker(directory, again, producer, failing)) {
            if failing.attempts.count >= 2, !delivered.withLock({ Self.setOnce(&$0) }) { again.deliver(cancelMessage) }
            return producer.events(of: "run-2").contains { $0.type == .canceled }
        }
        #expect(failing.launches.isEmpty)

        // A cancel after an attempt that started the agent all the same: the agent is found (and
        // stopped; this driver's agents have ended at once, so the run reports their own end),
        // never launched a second time, and the run is not recorded as never started.
        let unconfirmed = CountingDriver(failing: [unanswered], failedLaunchesStart: true)
        let third = ScriptedConsumer([try message(dispatch("run-3"), offset: 3)])
        let thirdCancel = try cancel("run-3", offset: 4)
        let sent = Mutex(false)
        try await run(try worker(directory, third, producer, unconfirmed)) {
            if unconfirmed.attempts.count >= 1, !sent.withLock({ Self.setOnce(&$0) }) { third.deliver(thirdCancel) }
            return producer.events(of: "run-3").contains { $0.type == .canceled || $0.type == .succeeded }
        }
        #expect(producer.events(of: "run-3").contains { $0.type == .started })
        #expect(unconfirmed.launches == ["run-3"])
        #expect(unconfirmed.attempts == ["run-3"])
    }

    @Test("a cancel read before its dispatch closes the run here, and the dispatch read after it is never launched")
    func cancelBeforeDispatchIsNeverLaunched() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        // What a host reads when the control plane withdrew a queued run's dispatch: the cancel that
        // follows a withdrawal, alone, or (a relay had read the dispatch just before) then the dispatch.
        let consumer = ScriptedConsumer([try cancel("run-9", offset: 0)])
        let producer = RecordingProducer()
        let driver = CountingDriver()
        try await run(try worker(directory, consumer, producer, driver)) {
            consumer.committed.count == 1 && producer.events(of: "run-9").contains { $0.type == .canceled }
        }
        let again = ScriptedConsumer([try message(dispatch("run-9"), offset: 1)])
        try await run(try worker(directory, again, producer, driver)) { again.committed.count == 1 }
        #expect(driver.launches.isEmpty)
        #expect(producer.events(of: "run-9").map(\.type) == [.canceled])
    }

    @Test("a cancel read while the agent is being launched stops the agent once it has started")
    func cancelDuringLaunchStopsTheAgent() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let consumer = ScriptedConsumer([try message(dispatch("run-3"), offset: 0)])
        let cancelMessage = try cancel("run-3", offset: 1)
        let producer = RecordingProducer()
        let driver = GatedDriver()
        let delivered = Mutex(false)
        try await run(try worker(directory, consumer, producer, driver)) {
            // The cancel is read while `launch` is still inside the driver, and handled (committed)
            // before the launch returns.
            if driver.launchesStarted == 1, !delivered.withLock({ Self.setOnce(&$0) }) {
                consumer.deliver(cancelMessage)
            }
            if consumer.committed.count == 2 { driver.releaseLaunches() }
            return producer.events(of: "run-3").contains { $0.type == .canceled }
        }
        #expect(driver.stops == ["run-3"])
        #expect(producer.events(of: "run-3").last?.type == .canceled)
    }

    @Test("an agent re-attached after a restart is stopped when its cancel was recorded before the crash")
    func reattachedCanceledAgentIsStopped() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let dispatched = dispatch("run-4")
        try await journal(dispatched, in: directory) { record in
            record.phase = .launched
            record.handleID = "agent-run-4"
            record.launchedAt = Date()
            _ = record.record(.started, hostId: hostId, at: Date())
            record.cancelRequested = true
        }

        let consumer = ScriptedConsumer([])
        let producer = RecordingProducer()
        let driver = GatedDriver(running: [dispatched])
        try await run(try worker(directory, consumer, producer, driver)) {
            producer.events(of: "run-4").contains { $0.type == .canceled }
        }
        #expect(driver.stops == ["run-4"])
        #expect(driver.launchesStarted == 0)
    }

    @Test("an agent launched just before a crash, before the journal recorded it, is adopted, not launched again")
    func unjournaledLaunchIsAdopted() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        // The journal says accepted; the driver knows the agent (its own record was written at launch).
        let dispatched = dispatch("run-5")
        try await journal(dispatched, in: directory)

        let consumer = ScriptedConsumer([])
        let producer = RecordingProducer()
        let driver = GatedDriver(running: [dispatched])
        let cancelMessage = try cancel("run-5", offset: 0)
        let delivered = Mutex(false)
        try await run(try worker(directory, consumer, producer, driver)) {
            if producer.events(of: "run-5").contains(where: { $0.type == .started }),
                !delivered.withLock({ Self.setOnce(&$0) })
            {
                consumer.deliver(cancelMessage)
            }
            return producer.events(of: "run-5").contains { $0.type == .canceled }
        }
        #expect(driver.launchesStarted == 0)
        #expect(driver.stops == ["run-5"])
        // Each event once per sequence (a re-publication repeats an event, never reorders them).
        var bySequence: [Int: RunEventType] = [:]
        for event in producer.events(of: "run-5") where bySequence[event.sequence] == nil {
            bySequence[event.sequence] = event.type
        }
        #expect(bySequence == [1: .accepted, 2: .started, 3: .canceled])
        #expect(try await RunJournal(dataDirectory: directory).record("run-5")?.handleID == "agent-run-5")
    }
}

extension HostWorkerTests {
    @Test(
        "stopping the orchestrator leaves a running agent alone; the restarted one re-attaches and reports its real end"
    )
    func shutdownDetachesAndRestartReattaches() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let release = directory.appendingPathComponent("release").path
        let ending: Set<RunEventType> = [.succeeded, .failed, .timedOut, .canceled, .rejected, .stopFailed]
        // A real agent process that runs until the test lets it end, then fails with exit code 3.
        let command = ["/bin/sh", "-c", "while [ ! -e '\(release)' ]; do sleep 0.05; done; exit 3"]
        let configuration = ProcessDriverConfiguration(stateDirectory: directory.appendingPathComponent("agents").path)
        let producer = RecordingProducer()
        let consumer = ScriptedConsumer([try message(dispatch("run-6"), offset: 0)])
        let first = ProcessDriver(configuration: configuration, logger: testLogger("driver"))
        try await run(try worker(directory, consumer, producer, first, command: command)) {
            producer.events(of: "run-6").contains { $0.type == .started }
        }
        // The orchestrator stopped (as on SIGTERM): nothing about the run's end was recorded or sent.
        #expect(producer.events(of: "run-6").allSatisfy { !ending.contains($0.type) })
        #expect(try await RunJournal(dataDirectory: directory).record("run-6")?.phase == .launched)
        let agents = try await first.list()
        #expect(agents.map(\.runId) == ["run-6"] && agents.allSatisfy(\.wasRunning))

        // The agent ends while no orchestrator runs; the next one re-attaches and reports that end.
        #expect(FileManager.default.createFile(atPath: release, contents: nil))
        let second = ProcessDriver(configuration: configuration, logger: testLogger("driver"))
        try await run(try worker(directory, ScriptedConsumer([]), producer, second, command: command)) {
            producer.events(of: "run-6").contains { ending.contains($0.type) }
        }
        let terminal = producer.events(of: "run-6").filter { ending.contains($0.type) }
        #expect(terminal.map(\.type) == [.failed])
        #expect(terminal.first?.exitCode == 3)
        #expect(producer.events(of: "run-6").filter { $0.type == .started }.map(\.sequence).uniqued().count == 1)
        #expect(try await second.list().isEmpty)
    }
}

extension HostWorkerTests {
    @Test(
        "a drain stops every running agent, cancels runs not launched yet without launching them, and reports both canceled"
    )
    func drainStopsAndCancelsEverything() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-hw-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let running = dispatch("run-7")
        try await journal(running, in: directory) { record in
            record.phase = .launched
            record.handleID = "agent-run-7"
            record.launchedAt = Date()
            _ = record.record(.started, hostId: hostId, at: Date())
        }
        let waiting = dispatch("run-8")
        try await journal(waiting, in: directory)
        let producer = RecordingProducer()
        let driver = GatedDriver(running: [running])
        let canceled = try await worker(directory, ScriptedConsumer([]), producer, driver).drain()
        #expect(canceled == 2)
        #expect(driver.stops == ["run-7"])
        #expect(driver.launchesStarted == 0)
        for runId in ["run-7", "run-8"] {
            let last = producer.events(of: runId).last
            #expect(last?.type == .canceled)
            #expect(last?.errorSummary?.contains("drained") == true)
        }
    }
}

extension Sequence where Element: Hashable {
    fileprivate func uniqued() -> [Element] {
        var seen: Set<Element> = []
        return filter { seen.insert($0).inserted }
    }
}

/// Agents that run until stopped; `launch` waits until ``releaseLaunches()``.
final class GatedDriver: AgentDriver {
    private struct State {
        var launchesStarted = 0
        var launchesReleased = false
        var launchWaiters: [CheckedContinuation<Void, Never>] = []
        var stops: [String] = []
        var stopped: Set<String> = []
        var exitWaiters: [String: [CheckedContinuation<AgentExit, Never>]] = [:]
    }
    private let state = Mutex(State())
    private let running: [AgentHandle]

    /// - Parameter running: Agents the driver reports as running (left by an earlier orchestrator).
    init(running: [RunDispatch] = []) {
        self.running = running.map(Self.handle)
    }

    var launchesStarted: Int { state.withLock { $0.launchesStarted } }
    var stops: [String] { state.withLock { $0.stops } }

    func releaseLaunches() {
        let waiters = state.withLock { state in
            state.launchesReleased = true
            defer { state.launchWaiters = [] }
            return state.launchWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    static func handle(_ dispatch: RunDispatch) -> AgentHandle {
        AgentHandle(
            id: "agent-\(dispatch.runId)", runId: dispatch.runId, jobId: dispatch.jobId, hostId: dispatch.hostId,
            dispatchEpoch: dispatch.dispatchEpoch, agentType: dispatch.agentType, logDirectory: "/tmp",
            wasRunning: true)
    }

    func launch(_ launch: AgentLaunch) async throws -> AgentHandle {
        await withCheckedContinuation { continuation in
            let released = state.withLock { state in
                state.launchesStarted += 1
                if !state.launchesReleased { state.launchWaiters.append(continuation) }
                return state.launchesReleased
            }
            if released { continuation.resume() }
        }
        return AgentHandle(
            id: "agent-\(launch.runId)", runId: launch.runId, jobId: launch.jobId, hostId: launch.hostId,
            dispatchEpoch: launch.dispatchEpoch, agentType: launch.agentType, logDirectory: launch.logDirectory,
            wasRunning: true)
    }

    func wait(_ handle: AgentHandle) async throws -> AgentExit {
        await withCheckedContinuation { continuation in
            let stopped = state.withLock { state in
                if !state.stopped.contains(handle.runId) {
                    state.exitWaiters[handle.runId, default: []].append(continuation)
                }
                return state.stopped.contains(handle.runId)
            }
            if stopped { continuation.resume(returning: AgentExit(exitCode: 143)) }
        }
    }

    func stop(_ handle: AgentHandle, grace: Duration) async throws -> StopOutcome {
        let waiters = state.withLock { state in
            state.stops.append(handle.runId)
            state.stopped.insert(handle.runId)
            return state.exitWaiters.removeValue(forKey: handle.runId) ?? []
        }
        for waiter in waiters { waiter.resume(returning: AgentExit(exitCode: 143)) }
        return StopOutcome(exit: AgentExit(exitCode: 143), killed: false)
    }

    func list() async throws -> [AgentHandle] { running }

    func release(_ handle: AgentHandle) async throws {}
}

/// Delivers a fixed list of messages, then waits (as a live consumer would: the worker ends when
/// its task is cancelled); records commits. Its buffer is the real consumers' ``ConsumerBuffer``.
final class ScriptedConsumer: MessageConsumer {
    typealias Waiter = CheckedContinuation<[IncomingMessage]?, any Error>

    private let buffer = Mutex(ConsumerBuffer<Waiter>(capacity: .max))
    private let commits = Mutex<[MessagePosition]>([])
    private let caughtUp = Mutex<Bool?>(nil)

    init(_ scripted: [IncomingMessage]) {
        buffer.withLock { _ = $0.deliver(scripted) }
    }

    var committed: [MessagePosition] { commits.withLock { $0 } }

    /// What ``hasCaughtUp`` says (nil, as a transport that cannot tell, until set).
    func setCaughtUp(_ value: Bool?) { caughtUp.withLock { $0 = value } }

    var hasCaughtUp: Bool? { caughtUp.withLock { $0 } }

    /// Delivers one more message, as if it had just been produced.
    func deliver(_ message: IncomingMessage) {
        buffer.withLock { $0.deliver(CollectionOfOne(message)) }.map { waiter, batch in waiter.resume(returning: batch)
        }
    }

    var messages: Messages { Messages(consumer: self) }

    func nextBatch(maxCount: Int) async throws -> [IncomingMessage]? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: Waiter) in
                let take = buffer.withLock { buffer -> ConsumerBuffer<Waiter>.Take? in
                    Task.isCancelled ? nil : buffer.take(upTo: maxCount, waiter: continuation)
                }
                switch take {
                case nil: continuation.resume(throwing: CancellationError())
                case .messages(let batch, _): continuation.resume(returning: batch)
                case .suspended: break
                case .busy: continuation.resume(throwing: TwoReaders())
                }
            }
        } onCancel: {
            buffer.withLock { $0.removeWaiter() }?.resume(throwing: CancellationError())
        }
    }

    func bufferedBatch(maxCount: Int) -> [IncomingMessage] {
        buffer.withLock { $0.available(upTo: maxCount).messages }
    }

    func commit(_ positions: [MessagePosition]) async throws {
        commits.withLock { $0 += positions }
    }

    struct TwoReaders: Error {}

    struct Messages: AsyncSequence, Sendable {
        let consumer: ScriptedConsumer

        func makeAsyncIterator() -> Iterator { Iterator(consumer: consumer) }

        struct Iterator: AsyncIteratorProtocol {
            let consumer: ScriptedConsumer

            mutating func next() async throws -> IncomingMessage? {
                try await consumer.nextBatch(maxCount: 1)?.first
            }
        }
    }
}

/// Acknowledges every message at once and keeps it.
final class RecordingProducer: MessageProducer {
    private let sent = Mutex<[OutgoingMessage]>([])

    func send(_ message: OutgoingMessage) async throws -> MessagePosition {
        keep(message)
    }

    func sendBatch(_ messages: [OutgoingMessage]) async -> [Result<MessagePosition, any Error>] {
        messages.map { .success(keep($0)) }
    }

    private func keep(_ message: OutgoingMessage) -> MessagePosition {
        sent.withLock { sent in
            sent.append(message)
            return MessagePosition(topic: message.topic, partition: 0, offset: Int64(sent.count - 1))
        }
    }

    /// The run events of `runId` sent so far, in order, duplicates included.
    func events(of runId: String) -> [RunLifecycleEvent] {
        sent.withLock { $0 }.filter { $0.topic == Topic.runEvents }.compactMap { message in
            let incoming = IncomingMessage(
                topic: message.topic, partition: 0, offset: 0, key: message.key, value: message.value,
                headers: message.headers)
            guard let wire = try? WireMessage(incoming), let event = try? RunLifecycleEvent.decode(wire) else {
                return nil
            }
            return event.runId == runId ? event : nil
        }
    }
}

/// Counts launches; every agent exits 0 at once. Launches fail with the errors of `failing` first,
/// one per attempt.
final class CountingDriver: AgentDriver {
    private let launched = Mutex<[String]>([])
    private let released = Mutex<[String]>([])
    private let failures: Mutex<[OrchestratorError]>
    private let attempted = Mutex<[String]>([])

    /// Agents a failed launch started all the same (a start the daemon did not confirm in time):
    /// listed by ``list()``.
    private let unconfirmed = Mutex<[AgentHandle]>([])
    private let failedLaunchesStart: Bool

    init(failing failures: [OrchestratorError] = [], failedLaunchesStart: Bool = false) {
        self.failures = Mutex(failures)
        self.failedLaunchesStart = failedLaunchesStart
    }

    var launches: [String] { launched.withLock { $0 } }
    var releases: [String] { released.withLock { $0 } }
    /// Every launch attempt, failed ones included.
    var attempts: [String] { attempted.withLock { $0 } }

    func launch(_ launch: AgentLaunch) async throws -> AgentHandle {
        attempted.withLock { $0.append(launch.runId) }
        let handle = AgentHandle(
            id: "agent-\(launch.runId)", runId: launch.runId, jobId: launch.jobId, hostId: launch.hostId,
            dispatchEpoch: launch.dispatchEpoch, agentType: launch.agentType, logDirectory: launch.logDirectory,
            wasRunning: true)
        if let failure = failures.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            if failedLaunchesStart {
                launched.withLock { $0.append(launch.runId) }
                unconfirmed.withLock { $0.append(handle) }
            }
            throw failure
        }
        launched.withLock { $0.append(launch.runId) }
        return handle
    }

    func wait(_ handle: AgentHandle) async throws -> AgentExit { AgentExit(exitCode: 0) }

    func stop(_ handle: AgentHandle, grace: Duration) async throws -> StopOutcome {
        StopOutcome(exit: AgentExit(exitCode: 0), killed: false, alreadyEnded: true)
    }

    func list() async throws -> [AgentHandle] { unconfirmed.withLock { $0 } }

    func release(_ handle: AgentHandle) async throws { released.withLock { $0.append(handle.runId) } }
}
