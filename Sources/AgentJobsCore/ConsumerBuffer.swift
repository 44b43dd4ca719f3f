import DequeModule

/// The bounded buffer between a consumer's reading side (the Kafka poll thread, the embedded
/// log's fetch loop) and its one reader, with the reader's waiting slot, as a value.
///
/// Both consumers keep one inside their state machine, behind their lock; neither has a second
/// buffer in front of its reader: a reader takes batches straight from here
/// (``MessageConsumer/nextBatch(maxCount:)``).
package struct ConsumerBuffer<Waiter> {
    /// What a reader's request gets.
    package enum Take {
        /// These messages, oldest first; `wasFull` when the buffer was full before (the reading
        /// side waits for room and must be woken).
        case messages([IncomingMessage], wasFull: Bool)
        /// Nothing buffered: the waiter was stored, and gets a batch from ``deliver(_:)``.
        case suspended
        /// Another reader already waits: one reader at a time.
        case busy
    }

    /// Messages held at most; the reading side pauses while the buffer is full.
    package let capacity: Int
    private var messages: Deque<IncomingMessage> = []
    private var waiter: (waiter: Waiter, maxCount: Int)?

    package init(capacity: Int) {
        self.capacity = max(capacity, 1)
    }

    package var count: Int { messages.count }

    /// How many more messages fit.
    package var room: Int { max(0, capacity - messages.count) }

    package var isFull: Bool { messages.count >= capacity }

    /// Messages the reading side read. Returns the waiting reader with its batch, when one waits.
    package mutating func deliver(_ arrived: some Sequence<IncomingMessage>) -> (Waiter, [IncomingMessage])? {
        messages.append(contentsOf: arrived)
        guard let waiting = waiter, !messages.isEmpty else { return nil }
        waiter = nil
        return (waiting.waiter, take(waiting.maxCount))
    }

    /// A reader asks for at most `maxCount` messages; `waiter` is stored when none is buffered.
    package mutating func take(upTo maxCount: Int, waiter newWaiter: Waiter) -> Take {
        if !messages.isEmpty {
            let wasFull = isFull
            return .messages(take(maxCount), wasFull: wasFull)
        }
        guard waiter == nil else { return .busy }
        waiter = (newWaiter, max(maxCount, 1))
        return .suspended
    }

    /// The messages buffered, at most `maxCount`, without waiting (possibly none), and whether the
    /// buffer was full before.
    package mutating func available(upTo maxCount: Int) -> (messages: [IncomingMessage], wasFull: Bool) {
        let wasFull = isFull
        return (take(maxCount), wasFull)
    }

    /// Removes and returns the waiting reader (its task was cancelled, or the consumer stops).
    package mutating func removeWaiter() -> Waiter? {
        defer { waiter = nil }
        return waiter?.waiter
    }

    /// Drops buffered messages (a revoked partition's, or all of them at shutdown).
    package mutating func removeAll(where shouldRemove: (IncomingMessage) -> Bool = { _ in true }) {
        messages.removeAll(where: shouldRemove)
    }

    private mutating func take(_ maxCount: Int) -> [IncomingMessage] {
        let count = min(max(maxCount, 1), messages.count)
        defer { messages.removeFirst(count) }
        return Array(messages.prefix(count))
    }
}
