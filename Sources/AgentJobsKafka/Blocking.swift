import Dispatch
import Foundation

/// Runs blocking librdkafka calls off Swift's cooperative thread pool.
enum Blocking {
    /// Runs `body` on a new, dedicated thread and returns its result. Used for long-lived loops
    /// (the librdkafka poll loop) that block for the whole life of a service.
    static func onDedicatedThread<T: Sendable>(
        name: String,
        _ body: @escaping @Sendable () -> T
    ) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            let thread = Thread {
                continuation.resume(returning: body())
            }
            thread.name = name
            thread.start()
        }
    }

    /// Runs a short blocking call (commit, admin request, flush, destroy) on `queue`, a serial
    /// dispatch queue whose threads are not the cooperative pool's.
    static func on<T: Sendable>(
        _ queue: DispatchQueue,
        _ body: @escaping @Sendable () throws(KafkaError) -> T
    ) async throws(KafkaError) -> T {
        let result: Result<T, KafkaError> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { () throws(KafkaError) -> T in try body() })
            }
        }
        return try result.get()
    }
}

/// A lock with a condition variable around a value, for state shared with a blocking thread
/// that must sleep until the value changes (the consumer's poll thread when the buffer is full).
final class ConditionLocked<Value>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    /// Runs `body` with exclusive access to the value.
    func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        condition.lock()
        defer { condition.unlock() }
        return try body(&value)
    }

    /// Wakes every thread waiting in ``wait(until:timeout:)``.
    func broadcast() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    /// Blocks the calling (dedicated, never cooperative) thread until `predicate` holds or
    /// `timeout` passes. Returns whether the predicate held.
    func wait(until predicate: (Value) -> Bool, timeout: TimeInterval) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while !predicate(value) {
            if !condition.wait(until: deadline) {
                return predicate(value)
            }
        }
        return true
    }
}
