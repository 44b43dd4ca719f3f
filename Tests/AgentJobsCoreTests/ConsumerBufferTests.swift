import AgentJobsCore
import Testing

@Suite("Consumer buffer (as a value)")
struct ConsumerBufferTests {
    static func message(_ offset: Int, partition: Int32 = 0) -> IncomingMessage {
        IncomingMessage(topic: "t", partition: partition, offset: Int64(offset), key: nil, value: [])
    }

    @Test("batches come out oldest first, at most the maximum, across many deliveries and takes")
    func fifoBatches() {
        var buffer = ConsumerBuffer<String>(capacity: 1000)
        var seen: [Int64] = []
        var next = 0
        for round in 0..<50 {
            _ = buffer.deliver((next..<next + 13).map { Self.message($0) })
            next += 13
            guard case .messages(let batch, _) = buffer.take(upTo: 7 + round % 5, waiter: "r") else {
                Issue.record("buffered messages must be handed out")
                return
            }
            #expect(batch.count == 7 + round % 5)
            seen += batch.map(\.offset)
        }
        seen += buffer.available(upTo: .max).messages.map(\.offset)
        #expect(seen == (0..<next).map(Int64.init))
        #expect(buffer.count == 0)
    }

    @Test("a waiting reader gets the next delivery as its batch; a second reader is refused")
    func waitingReader() {
        var buffer = ConsumerBuffer<String>(capacity: 10)
        guard case .suspended = buffer.take(upTo: 2, waiter: "r1") else {
            Issue.record("an empty buffer stores the reader")
            return
        }
        guard case .busy = buffer.take(upTo: 2, waiter: "r2") else {
            Issue.record("a second reader must be refused")
            return
        }
        let handed = buffer.deliver((0..<3).map { Self.message($0) })
        #expect(handed?.0 == "r1")
        #expect(handed?.1.map(\.offset) == [0, 1])
        #expect(buffer.count == 1)
        #expect(buffer.removeWaiter() == nil)
    }

    @Test("full, room and wasFull tell the reading side when to pause and when to resume")
    func backPressure() {
        var buffer = ConsumerBuffer<String>(capacity: 2)
        #expect(buffer.room == 2)
        _ = buffer.deliver([Self.message(0), Self.message(1)])
        #expect(buffer.isFull && buffer.room == 0)
        guard case .messages(_, let wasFull) = buffer.take(upTo: 1, waiter: "r") else { return }
        #expect(wasFull)
        #expect(buffer.room == 1)
        #expect(buffer.available(upTo: 1).wasFull == false)
    }

    @Test("removing by partition keeps the others in order; a cancelled reader is returned once")
    func removal() {
        var buffer = ConsumerBuffer<String>(capacity: 10)
        _ = buffer.deliver((0..<6).map { Self.message($0, partition: Int32($0 % 2)) })
        buffer.removeAll { $0.partition == 0 }
        #expect(buffer.available(upTo: 10).messages.map(\.offset) == [1, 3, 5])
        _ = buffer.take(upTo: 1, waiter: "r")
        #expect(buffer.removeWaiter() == "r")
        #expect(buffer.removeWaiter() == nil)
    }
}
