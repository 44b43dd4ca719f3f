/// A wait that ran out of time.
public struct TimeoutError: Error, CustomStringConvertible {
    public let what: String
    public init(what: String) { self.what = what }
    public var description: String { "timed out: \(what)" }
}

/// Runs `body`, failing with ``TimeoutError`` (and cancelling it) after `seconds`.
public func withDeadline<T: Sendable>(
    _ seconds: Double,
    _ what: String,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw TimeoutError(what: what)
        }
        return value
    }
}

/// Polls `condition` every 50 ms until it holds (a wait, not an assertion: what is expected is
/// checked afterwards).
/// - Throws: ``TimeoutError`` naming `what` when it still does not hold after `timeout`.
public func waitUntil(
    _ what: String, within timeout: Duration = .seconds(20), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(try await condition()) {
        guard ContinuousClock.now < deadline else { throw TimeoutError(what: "\(what) (waited \(timeout))") }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// `body(0..<count)`, at most `width` at a time; the results in index order.
public func concurrently<T: Sendable>(
    _ count: Int, width: Int, _ body: @escaping @Sendable (Int) async throws -> T
) async throws -> [T] {
    try await withThrowingTaskGroup(of: (Int, T).self) { group in
        var results = [T?](repeating: nil, count: count)
        var next = 0
        func addNext() {
            let index = next
            group.addTask { (index, try await body(index)) }
            next += 1
        }
        while next < min(width, count) { addNext() }
        while let (index, value) = try await group.next() {
            results[index] = value
            if next < count { addNext() }
        }
        return results.compactMap { $0 }
    }
}
