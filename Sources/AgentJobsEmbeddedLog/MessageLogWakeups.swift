import AgentJobsCore
import Dispatch
import Synchronization

/// The partitions one commit appended to, with the keys of the messages in each.
struct AppendedMessages: Sendable {
    private(set) var keysByPartition: [TopicPartition: Set<[UInt8]>] = [:]

    mutating func add(_ topicPartition: TopicPartition, key: [UInt8]?) {
        // A message without a key still marks its partition (consumers without a key filter read it).
        keysByPartition[topicPartition, default: []].formUnion(key.map { [$0] } ?? [])
    }

    /// Whether a consumer with `interest` can receive any of these messages.
    func concern(_ interest: MessageLogInterest) -> Bool {
        switch interest {
        case .partitions(let partitions, let keyFilter):
            return partitions.contains { partition in
                guard let keys = keysByPartition[partition] else { return false }
                // A key-filtered fetch returns only that key, so other keys would wake it for nothing.
                return keyFilter.map(keys.contains) ?? true
            }
        case .topics(let topics):
            return keysByPartition.keys.contains { topics.contains($0.topic) }
        }
    }
}

/// What a consumer of the log reads, so that a commit wakes only the consumers it concerns.
enum MessageLogInterest: Sendable, Hashable {
    /// A manual assignment of these partitions, optionally only messages with this key.
    case partitions(Set<TopicPartition>, keyFilter: [UInt8]?)
    /// Every partition of these topics (a group member).
    case topics(Set<String>)
}

/// Wakes the consumers of one ``SQLiteMessageLog`` in this process when something they may wait
/// for was committed: new messages in what they read, or a released group lease.
///
/// Wake-ups are targeted: in the embedded shape one process holds the aggregator and, with
/// `dev`, every host's dispatch consumer (the end-to-end benchmark: 100), and waking all of them
/// on every commit cost one fetch query per consumer per commit on the shared reader connections.
final class MessageLogSignal: Sendable {
    private struct Subscriber: Sendable {
        var wakeup: Wakeup
        var interest: MessageLogInterest
    }

    private let subscribers = Mutex<[ObjectIdentifier: Subscriber]>([:])

    func subscribe(_ wakeup: Wakeup, interest: MessageLogInterest) {
        subscribers.withLock { $0[ObjectIdentifier(wakeup)] = Subscriber(wakeup: wakeup, interest: interest) }
    }

    func unsubscribe(_ wakeup: Wakeup) {
        _ = subscribers.withLock { $0.removeValue(forKey: ObjectIdentifier(wakeup)) }
    }

    /// Wakes the consumers that can receive any of `appended`.
    func signal(_ appended: AppendedMessages) {
        let concerned = subscribers.withLock { subscribers in
            subscribers.values.filter { appended.concern($0.interest) }.map(\.wakeup)
        }
        for wakeup in concerned { wakeup.wake() }
    }

    /// Wakes every consumer (a group lease was released: a standby may take over).
    func signalAll() {
        for wakeup in subscribers.withLock({ $0.values.map(\.wakeup) }) {
            wakeup.wake()
        }
    }
}

/// A one-slot wake-up for a loop that sleeps until something happens or a timeout passes.
///
/// A ``wake()`` while nobody waits is remembered, so a signal that arrives between checking for
/// work and going to sleep is never lost (the next ``wait(timeout:)`` returns at once).
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        var token: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Whether a ``wake()`` is remembered for the next ``wait(timeout:)`` (for tests).
    var isPending: Bool { state.withLock { $0.pending } }

    func wake() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns after a ``wake()`` (also one that came before this call) or after `timeout`.
    func wait(timeout: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let token = state.withLock { state -> UInt64? in
                if state.pending {
                    state.pending = false
                    return nil
                }
                state.token &+= 1
                state.waiter = continuation
                return state.token
            }
            guard let token else {
                continuation.resume()
                return
            }
            let nanoseconds = max(Int(clamping: timeout.millisecondCount), 1) * 1_000_000
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) {
                let expired = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                    guard state.token == token, let waiter = state.waiter else { return nil }
                    state.waiter = nil
                    return waiter
                }
                expired?.resume()
            }
        }
    }
}
