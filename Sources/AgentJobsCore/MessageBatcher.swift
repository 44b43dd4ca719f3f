/// Turns a consumer's message sequence into batches: whatever has arrived, up to a maximum, as
/// soon as at least one message is there. Bounded: when `capacity` messages wait, the reading side
/// stops pulling from the consumer (whose own buffer then applies back-pressure to the log).
public actor MessageBatcher {
    private var buffer: [IncomingMessage] = []
    private var finished: (any Error)?? = nil
    private var closed = false
    private let capacity: Int
    private var waitingReader: CheckedContinuation<Void, Never>?
    private var waitingWriter: CheckedContinuation<Void, Never>?

    /// - Parameter capacity: Messages held at most between the consumer and the reader.
    public init(capacity: Int) { self.capacity = capacity }

    /// Reads `messages` into the buffer until it ends; run it in a child task.
    public nonisolated func pump<Messages: AsyncSequence<IncomingMessage, any Error>>(_ messages: Messages) async {
        do {
            for try await message in messages {
                guard await append(message) else { return }
            }
            await finish(nil)
        } catch {
            await finish(error)
        }
    }

    /// Ends the batcher early, when its reader stops before the sequence ended: the waiting
    /// messages are dropped (never committed, so read again after the next start), and a
    /// ``pump(_:)`` waiting for room returns instead of holding its task group open.
    public func close() {
        closed = true
        buffer.removeAll()
        if finished == nil { finished = .some(nil) }
        waitingWriter?.resume()
        waitingWriter = nil
        waitingReader?.resume()
        waitingReader = nil
    }

    /// False once closed.
    private func append(_ message: IncomingMessage) async -> Bool {
        while buffer.count >= capacity && !closed {
            await withCheckedContinuation { waitingWriter = $0 }
        }
        guard !closed else { return false }
        buffer.append(message)
        waitingReader?.resume()
        waitingReader = nil
        return true
    }

    private func finish(_ error: (any Error)?) {
        finished = .some(error)
        waitingReader?.resume()
        waitingReader = nil
    }

    /// The messages that have arrived, at most `maxCount`, without waiting (possibly none).
    public func available(maxCount: Int) -> [IncomingMessage] {
        let count = min(maxCount, buffer.count)
        guard count > 0 else { return [] }
        let batch = Array(buffer.prefix(count))
        buffer.removeFirst(count)
        waitingWriter?.resume()
        waitingWriter = nil
        return batch
    }

    /// The next batch of at most `maxCount` messages, waiting for the first one.
    /// - Returns: `nil` once the sequence ended and everything was handed out.
    /// - Throws: The sequence's error, after the messages before it were handed out.
    public func next(maxCount: Int) async throws -> [IncomingMessage]? {
        while buffer.isEmpty {
            if let finished {
                if let error = finished { throw error }
                return nil
            }
            await withCheckedContinuation { waitingReader = $0 }
        }
        let count = min(maxCount, buffer.count)
        let batch = Array(buffer.prefix(count))
        buffer.removeFirst(count)
        waitingWriter?.resume()
        waitingWriter = nil
        return batch
    }
}
