import AgentJobsCore
import Testing

@testable import AgentJobsKafka

@Suite("producer state machine (as a value)")
struct ProducerStateMachineTests {
    @Test("sends register ids and their delivery reports find their sink once")
    func registerAndDeliver() {
        var machine = ProducerStateMachine<String>()
        guard case .produce(let first) = machine.register("a"), case .produce(let second) = machine.register("b") else {
            Issue.record("sends must be accepted before run()")
            return
        }
        #expect(first != second)
        #expect(machine.inFlightCount == 2)
        let result1 = machine.delivered(id: second)
        #expect(result1 == "b")
        let result2 = machine.delivered(id: second)
        #expect(result2 == nil)  // a duplicate report is ignored
        let result3 = machine.enqueueFailed(id: first)
        #expect(result3 == "a")
        #expect(machine.inFlightCount == 0)
    }

    @Test("run() twice is refused")
    func runTwice() {
        var machine = ProducerStateMachine<Int>()
        #expect((try? machine.start().get()) != nil)
        #expect(throws: KafkaError.self) { try machine.start().get() }
    }

    @Test("after shutdown began, sends fail with producerShutDown and leftovers are returned once")
    func shutdown() {
        var machine = ProducerStateMachine<Int>()
        _ = machine.start()
        _ = machine.register(1)
        _ = machine.register(2)
        let first = machine.beginShutdown()
        let second = machine.beginShutdown()
        #expect(first)
        #expect(!second)
        guard case .fail(let error) = machine.register(3) else {
            Issue.record("send during shutdown must fail")
            return
        }
        #expect(error.code == .producerShutDown)
        let leftovers = machine.finish()
        let again = machine.finish()
        #expect(leftovers == [1, 2])
        #expect(again.isEmpty)
        #expect(machine.lifecycle == .finished)
    }

    @Test("a delivery timeout asks for a new handle, but only once nothing is in flight")
    func handleReplacementAfterTimeout() {
        var machine = ProducerStateMachine<Int>()
        _ = machine.start()
        guard case .produce(let a) = machine.register(1), case .produce(let b) = machine.register(2) else { return }
        _ = machine.delivered(id: a, timedOut: true)
        #expect(!machine.shouldReplaceHandle)  // message 2 is still in flight on the old handle
        _ = machine.delivered(id: b)
        #expect(machine.shouldReplaceHandle)
        machine.handleReplaced()
        #expect(!machine.shouldReplaceHandle)
        // Successful deliveries never ask for one; neither does shutdown.
        guard case .produce(let c) = machine.register(3) else { return }
        _ = machine.delivered(id: c)
        #expect(!machine.shouldReplaceHandle)
        guard case .produce(let d) = machine.register(4) else { return }
        _ = machine.beginShutdown()
        _ = machine.delivered(id: d, timedOut: true)
        #expect(!machine.shouldReplaceHandle)
    }

    @Test("after a fatal error, sends fail with it until the handle is replaced, once in-flight messages were failed")
    func fatal() {
        var machine = ProducerStateMachine<Int>()
        _ = machine.start()
        guard case .produce(let inFlight) = machine.register(1) else { return }
        machine.fatal(KafkaError(code: .fatal, message: "unknown producer id"))
        guard case .fail(let error) = machine.register(2) else {
            Issue.record("send after fatal must fail")
            return
        }
        #expect(error.code == .fatal)
        // Message 1 reports first (purged from the queue, or its real outcome), then the handle is replaced.
        #expect(machine.shouldPurgeBeforeReplacing)
        #expect(!machine.shouldReplaceHandle)
        #expect(machine.delivered(id: inFlight) == 1)
        #expect(!machine.shouldPurgeBeforeReplacing)
        #expect(machine.shouldReplaceHandle)
        machine.handleReplaced()
        #expect(machine.fatalError == nil)
        guard case .produce = machine.register(3) else {
            Issue.record("a send after the replacement must be enqueued")
            return
        }
        // A fatal error once shutdown began is final: no replacement, run() ends with it.
        _ = machine.beginShutdown()
        machine.fatal(KafkaError(code: .fatal, message: "late"))
        #expect(!machine.shouldReplaceHandle && !machine.shouldPurgeBeforeReplacing)
        #expect(machine.fatalError?.message == "late")
    }
}

@Suite("consumer state machine (as a value)")
struct ConsumerStateMachineTests {
    typealias Machine = ConsumerStateMachine<String>
    let tp0 = TopicPartition(topic: "t", partition: 0)
    let tp1 = TopicPartition(topic: "t", partition: 1)

    func message(_ tp: TopicPartition, _ offset: Int64, key: String = "k") -> IncomingMessage {
        IncomingMessage(topic: tp.topic, partition: tp.partition, offset: offset, key: Array(key.utf8), value: [])
    }

    func running(capacity: Int = 3, keyFilter: [UInt8]? = nil) -> Machine {
        var machine = Machine(capacity: capacity, keyFilter: keyFilter)
        _ = machine.start()
        return machine
    }

    @Test("the buffer is bounded: polling waits when full and resumes when the reader takes one")
    func backPressure() {
        var machine = running(capacity: 2)
        machine.assigned([tp0])
        #expect(machine.pollAction == .poll)
        _ = machine.received(message(tp0, 0))
        _ = machine.received(message(tp0, 1))
        #expect(machine.pollAction == .waitForReader)
        guard case .messages(let first, let wake) = machine.next(waiter: "reader") else {
            Issue.record("a buffered message must be returned")
            return
        }
        #expect(first.map(\.offset) == [0])
        #expect(wake)
        #expect(machine.pollAction == .poll)
        guard case .messages(_, let wakeAgain) = machine.next(waiter: "reader") else { return }
        #expect(!wakeAgain)
    }

    @Test("a waiting reader gets the next message directly; a second reader is refused")
    func waitingReader() {
        var machine = running()
        machine.assigned([tp0])
        guard case .suspended = machine.next(waiter: "r1") else {
            Issue.record("reader must wait on an empty buffer")
            return
        }
        guard case .fail(let error) = machine.next(waiter: "r2") else {
            Issue.record("concurrent reader must fail")
            return
        }
        #expect(error.code == .concurrentIteration)
        guard case .resume(let waiter, let delivered) = machine.received(message(tp0, 7)) else {
            Issue.record("message must go to the waiting reader")
            return
        }
        #expect(waiter == "r1")
        #expect(delivered.map(\.offset) == [7])
        #expect(machine.bufferedCount == 0)
    }

    @Test("cancelling a waiting reader returns it once")
    func cancelWaiter() {
        var machine = running()
        _ = machine.next(waiter: "r1")
        let result4 = machine.cancelWaiter()
        #expect(result4 == "r1")
        let result5 = machine.cancelWaiter()
        #expect(result5 == nil)
    }

    @Test("messages of unassigned partitions are dropped; key filter skips other keys")
    func filtering() {
        var machine = running(keyFilter: Array("host-a".utf8))
        machine.assigned([tp0])
        _ = machine.received(message(tp1, 0, key: "host-a"))  // not ours
        _ = machine.received(message(tp0, 0, key: "host-b"))  // other key
        _ = machine.received(message(tp0, 1, key: "host-a"))
        #expect(machine.bufferedCount == 1)
        guard case .messages(let m, _) = machine.next(waiter: "r") else { return }
        #expect(m.map(\.offset) == [1])
        // The skipped message still counts as where reading resumed.
        #expect(machine.assignment[tp0]?.resumedAt == 0)
    }

    @Test("commits move forward only, from where reading resumed, and one per partition")
    func monotonicCommits() throws {
        var machine = running()
        machine.assigned([tp0, tp1])
        _ = machine.received(message(tp0, 10))
        _ = machine.received(message(tp1, 3))
        let offsets = try machine.offsetsToCommit([
            .init(topicPartition: tp0, offset: 11), .init(topicPartition: tp0, offset: 12),
            .init(topicPartition: tp1, offset: 3),
        ])
        #expect(offsets == [tp0: 13, tp1: 4])
        machine.committed(offsets)
        // Older or equal positions are covered already: nothing to commit (no double commit).
        #expect(
            try machine.offsetsToCommit([.init(topicPartition: tp0, offset: 12), .init(topicPartition: tp1, offset: 2)])
                .isEmpty)
        // Positions before where reading resumed belong to an earlier ownership.
        #expect(try machine.offsetsToCommit([.init(topicPartition: tp0, offset: 5)]).isEmpty)
    }

    @Test("a revoke drops buffered messages of the partition and refuses its late commits")
    func revokeNeverLeaksCommits() throws {
        var machine = running(capacity: 10)
        machine.assigned([tp0, tp1])
        _ = machine.received(message(tp0, 0))
        _ = machine.received(message(tp1, 0))
        _ = machine.received(message(tp0, 1))
        machine.revoked([tp0])
        #expect(machine.bufferedCount == 1)
        #expect(try machine.offsetsToCommit([.init(topicPartition: tp0, offset: 0)]).isEmpty)
        // Re-assigned later (A→B→A): positions from the first ownership stay refused until
        // a message of the new ownership was fetched, and below where it resumed.
        machine.assigned([tp0])
        #expect(try machine.offsetsToCommit([.init(topicPartition: tp0, offset: 1)]).isEmpty)
        _ = machine.received(message(tp0, 40))
        #expect(try machine.offsetsToCommit([.init(topicPartition: tp0, offset: 1)]).isEmpty)
        #expect(try machine.offsetsToCommit([.init(topicPartition: tp0, offset: 40)]) == [tp0: 41])
    }

    @Test("close ends the sequence, drops the buffer, and commits fail once closed")
    func closing() {
        var machine = running()
        machine.assigned([tp0])
        _ = machine.received(message(tp0, 0))
        let result6 = machine.close()
        #expect(result6 == nil)
        #expect(machine.pollAction == .stop)
        guard case .finished(nil) = machine.next(waiter: "r") else {
            Issue.record("sequence must end after close")
            return
        }
        machine.closed()
        #expect(throws: KafkaError.self) { try machine.offsetsToCommit([.init(topicPartition: tp0, offset: 0)]) }
    }

    @Test("a fatal error finishes the sequence with that error")
    func fatal() {
        var machine = running()
        _ = machine.next(waiter: "r")
        let result7 = machine.failed(KafkaError(code: .fatal, message: "x"))
        #expect(result7 == "r")
        guard case .finished(let error?) = machine.next(waiter: "r2") else {
            Issue.record("expected the fatal error")
            return
        }
        #expect(error.code == .fatal)
    }

    @Test("a reader takes a batch of at most its maximum, oldest first, and a full buffer's reader wakes the poller")
    func batches() {
        var machine = running(capacity: 3)
        machine.assigned([tp0])
        for offset in 0..<3 { _ = machine.received(message(tp0, Int64(offset))) }
        guard case .messages(let batch, let wake) = machine.next(upTo: 2, waiter: "r") else {
            Issue.record("buffered messages must be returned")
            return
        }
        #expect(batch.map(\.offset) == [0, 1])
        #expect(wake)
        let rest = machine.available(upTo: 10)
        #expect(rest.messages.map(\.offset) == [2])
        #expect(!rest.wakePoller)
        #expect(machine.available(upTo: 10).messages.isEmpty)
    }
}
