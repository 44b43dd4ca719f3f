import AgentJobsCore
import Testing

@Suite("Message batcher", .timeLimit(.minutes(1)))
struct MessageBatcherTests {
    static func message(_ offset: Int64) -> IncomingMessage {
        IncomingMessage(topic: "t", partition: 0, offset: offset, key: nil, value: [])
    }

    /// A sequence that never ends by itself: messages 0, 1, 2, … as fast as they are taken.
    struct Endless: AsyncSequence {
        struct Iterator: AsyncIteratorProtocol {
            var offset: Int64 = 0
            mutating func next() async throws -> IncomingMessage? {
                defer { offset += 1 }
                return MessageBatcherTests.message(offset)
            }
        }
        func makeAsyncIterator() -> Iterator { Iterator() }
    }

    @Test("batches hold what arrived, in order, at most the maximum")
    func batchesInOrder() async throws {
        let batcher = MessageBatcher(capacity: 10)
        let messages = AsyncThrowingStream<IncomingMessage, any Error> { continuation in
            for offset in 0..<7 { continuation.yield(Self.message(Int64(offset))) }
            continuation.finish()
        }
        await batcher.pump(messages)
        let first = try #require(try await batcher.next(maxCount: 4))
        let second = try #require(try await batcher.next(maxCount: 4))
        #expect(first.map(\.position.offset) == [0, 1, 2, 3])
        #expect(second.map(\.position.offset) == [4, 5, 6])
        #expect(try await batcher.next(maxCount: 4) == nil)
    }

    @Test("close() ends a pump that waits for room, so a reader that stopped early never holds its task group open")
    func closeReleasesAFullPump() async throws {
        let batcher = MessageBatcher(capacity: 3)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await batcher.pump(Endless()) }
            let batch = try #require(try await batcher.next(maxCount: 2))
            #expect(batch.map(\.position.offset) == [0, 1])
            // The reader stops here (SIGTERM while its store is down); the pump is full, waiting.
            try await Task.sleep(for: .milliseconds(100))
            await batcher.close()
            try await group.waitForAll()  // returns: the pump ended
        }
        #expect(try await batcher.next(maxCount: 2) == nil)
    }
}
