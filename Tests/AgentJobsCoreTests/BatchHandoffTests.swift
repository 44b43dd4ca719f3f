import Testing

@testable import AgentJobsCore

@Suite("Batch hand-off between pipeline stages")
struct BatchHandoffTests {
    @Test("elements come out in order, then nil once finished")
    func order() async throws {
        let handoff = BatchHandoff<Int>()
        let producer = Task {
            for value in 1...50 { await handoff.put(value) }
            await handoff.finish()
        }
        var taken: [Int] = []
        while let value = try await handoff.take() { taken.append(value) }
        await producer.value
        #expect(taken == Array(1...50))
    }

    @Test("a put waits while an element is waiting: the producer runs at most one ahead")
    func bounded() async throws {
        let handoff = BatchHandoff<Int>()
        let progress = Counter()
        let producer = Task {
            for value in 1...3 {
                await handoff.put(value)
                await progress.increment()
            }
        }
        // Whatever the scheduling, the producer cannot have handed over more than one untaken element.
        while await progress.value < 1 { await Task.yield() }
        for _ in 0..<100 { await Task.yield() }
        #expect(await progress.value == 1)
        #expect(try await handoff.take() == 1)
        #expect(try await handoff.take() == 2)
        #expect(try await handoff.take() == 3)
        await producer.value
        #expect(await progress.value == 3)
    }

    struct Boom: Error {}

    @Test("finishing with an error hands out what waits, then throws it")
    func finishWithError() async throws {
        let handoff = BatchHandoff<Int>()
        await handoff.put(7)
        await handoff.finish(throwing: Boom())
        #expect(try await handoff.take() == 7)
        await #expect(throws: Boom.self) { try await handoff.take() }
    }

    @Test("closing from the taking side releases a waiting put, which drops its element")
    func close() async throws {
        let handoff = BatchHandoff<Int>()
        await handoff.put(1)
        let blocked = Task { await handoff.put(2) }
        for _ in 0..<100 { await Task.yield() }
        await handoff.close()
        await blocked.value
        #expect(try await handoff.take() == 1)
        #expect(try await handoff.take() == nil)
    }
}

private actor Counter {
    private(set) var value = 0
    func increment() { value += 1 }
}
