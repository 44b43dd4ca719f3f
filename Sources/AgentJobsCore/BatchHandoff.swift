/// Passes work from one pipeline stage to the next, one element at a time (the aggregator's verified
/// batches to its apply stage): `put` waits while an element is already waiting, so the producing
/// stage runs at most one element ahead (bounded); `take` waits for the next one.
public actor BatchHandoff<Element: Sendable> {
    private var waiting: Element?
    private var finished: (any Error)?? = nil
    private var waitingTaker: CheckedContinuation<Void, Never>?
    private var waitingPutter: CheckedContinuation<Void, Never>?

    public init() {}

    /// Hands over `element`, waiting while the previous one has not been taken. After ``close()``
    /// it returns at once and the element is dropped (nobody will take it).
    public func put(_ element: Element) async {
        while waiting != nil, finished == nil {
            await withCheckedContinuation { waitingPutter = $0 }
        }
        guard finished == nil else { return }
        waiting = element
        wake(&waitingTaker)
    }

    /// The next element, waiting for it.
    /// - Returns: `nil` once ``finish(throwing:)`` was called and everything was taken.
    /// - Throws: The error given to ``finish(throwing:)``.
    public func take() async throws -> Element? {
        while waiting == nil {
            if let finished {
                if let error = finished { throw error }
                return nil
            }
            await withCheckedContinuation { waitingTaker = $0 }
        }
        defer {
            waiting = nil
            wake(&waitingPutter)
        }
        return waiting
    }

    /// No more elements will come; `take` returns what is waiting, then nil (or throws `error`).
    public func finish(throwing error: (any Error)? = nil) {
        if finished == nil { finished = .some(error) }
        wake(&waitingTaker)
    }

    /// The taking side stopped: wakes a waiting `put`, which drops its element.
    public func close() {
        finish()
        wake(&waitingPutter)
    }

    private func wake(_ continuation: inout CheckedContinuation<Void, Never>?) {
        continuation?.resume()
        continuation = nil
    }
}
