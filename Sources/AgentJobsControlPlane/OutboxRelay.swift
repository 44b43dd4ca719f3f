import AgentJobsCore
import AgentJobsLifecycle
import AgentJobsStore
import CoreMetrics
import Logging
import ServiceLifecycle
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Publishes the store's outbox (dispatch and cancel commands written in the same transaction as
/// their runs) to the message transport, signing each message with the control plane's key.
///
/// A row is marked sent only after the transport acknowledged it, so a relay killed at any point
/// re-publishes at most the rows it had in flight: at-least-once, and the message id (the outbox
/// sequence) is the same both times, so consumers deduplicate. Rows are published oldest first,
/// together, and the idempotent producer keeps their order per partition. When a row fails, the
/// later rows of its key stay pending too and are published again after it, so the last copy a
/// host reads is in order (hosts also treat a cancel read before its dispatch as final).
///
/// Several `serve` replicas divide the outbox: each relay publishes only the shards it leases
/// (``Store/leaseOutboxShards(replica:duration:)``), renewed every ``Configuration/leaseRenewal``.
/// It stops handing rows to the transport ``Configuration/leaseMargin`` before a lease could have
/// expired, measured by this process's monotonic clock from before the renewal began, so neither
/// clock skew nor a database it cannot reach makes two replicas publish one shard for long. A
/// replica that stops gracefully releases its shards; a killed one's expire.
public struct OutboxRelay: Service {
    /// Settings of the relay.
    public struct Configuration: Sendable {
        /// Rows read and published per pass.
        public var batchSize = 5000
        /// How long an idle relay waits before looking again when nothing wakes it.
        public var idleInterval: Duration = .milliseconds(100)
        /// Wait after a failed pass.
        public var retryInterval: Duration = .seconds(1)
        /// How long a shard lease lasts (timed by the database).
        public var leaseDuration: Duration = .seconds(6)
        /// How often leases are renewed (and unheld shards claimed).
        public var leaseRenewal: Duration = .seconds(2)
        /// How long before a lease could expire the relay stops publishing its shards.
        public var leaseMargin: Duration = .seconds(1)
        public init() {}
    }

    let store: any Store
    let producer: any MessageProducer
    let signingKey: DispatchSigningKey
    let configuration: Configuration
    let wakeUps: OutboxSignal
    let logger: Logger
    /// This relay's name in the lease tables: unique per process.
    let replica: String
    let lease = LeasedShards()

    /// The relay registers `wakeUps` with `store` (``Store/onOutboxAppended(_:)``): rows this
    /// process's store object appends are published at once; rows other processes write are found
    /// at the next poll (``Configuration/idleInterval``).
    public init(
        store: any Store, producer: any MessageProducer, signingKey: DispatchSigningKey,
        wakeUps: OutboxSignal = OutboxSignal(), configuration: Configuration = .init(),
        replica: String = OutboxRelay.replicaName(), logger: Logger
    ) {
        store.onOutboxAppended { [wakeUps] in wakeUps.notify() }
        self.store = store
        self.producer = producer
        self.signingKey = signingKey
        self.configuration = configuration
        self.wakeUps = wakeUps
        self.replica = replica
        self.logger = logger
    }

    /// A name for this process's relay: the machine, the process id and a random part (a restarted
    /// process is a new replica; its predecessor's leases expire).
    public static func replicaName() -> String {
        let random = UInt32.random(in: .min ... .max)
        let hex = String(random, radix: 16)
        return "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)-\(hex)"
    }

    public func run() async throws {
        logger.info("outbox relay started", metadata: ["replica": "\(replica)"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await keepLeases() }
            group.addTask { await publish() }
            await group.waitForAll()
        }
        // Bounded: a stop must not wait for a database that does not answer (the leases then expire).
        do {
            let released: Void? = try await abandoning(after: .seconds(2)) { [store, replica] in
                try await store.releaseOutboxShards(replica: replica)
            }
            if released == nil { throw StoreError(.unavailable, "no answer within 2 s") }
        } catch {
            logger.warning(
                "could not release the outbox shards; they move to other replicas when their leases expire",
                metadata: ["error": "\(error)"])
        }
        logger.info("outbox relay stopped")
    }

    /// Publishes the leased shards' rows whenever woken or every idle interval.
    private func publish() async {
        var held = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var wait = configuration.idleInterval
            let current = lease.current()
            if held && current == nil {
                logger.warning("the outbox shard leases ran out; publishing waits until they are renewed")
            }
            held = current != nil
            if let shards = current, !shards.isEmpty {
                do {
                    _ = try await drain(shards) { lease.holds(shards) }
                } catch {
                    logger.error("outbox relay pass failed; retrying", metadata: ["error": "\(error)"])
                    wait = configuration.retryInterval
                }
            }
            await wakeUps.wait(upTo: wait)
        }
    }

    /// Renews the shard leases every ``Configuration/leaseRenewal`` until shutdown (once, for a
    /// store whose leases do not expire).
    private func keepLeases() async {
        var announced: OutboxLease?
        var failing = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let start = ContinuousClock.now
            do {
                // A renewal the database does not answer is given up at shutdown.
                let granted = try await cancelWhenGracefulShutdown { [store, replica, configuration] in
                    try await store.leaseOutboxShards(replica: replica, duration: configuration.leaseDuration)
                }
                lease.update(
                    granted.shards,
                    validUntil: granted.duration.map { start.advanced(by: $0 - configuration.leaseMargin) })
                if granted != announced || failing {
                    logger.info(
                        "outbox shards leased",
                        metadata: [
                            "shards": "\(Self.describe(granted.shards))", "replicas": "\(granted.replicas)",
                        ])
                    announced = granted
                    failing = false
                    wakeUps.notify()
                }
                if granted.duration == nil { return }
            } catch {
                if !failing {
                    logger.warning(
                        "could not renew the outbox shard leases; publishing stops when they expire",
                        metadata: ["error": "\(error)"])
                }
                failing = true
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: configuration.leaseRenewal) }
            } catch {
                return
            }
        }
    }

    private static func describe(_ shards: OutboxShards) -> String {
        switch shards {
        case .all: "all"
        case .only(let held): held.isEmpty ? "none" : held.sorted().map(String.init).joined(separator: ",")
        }
    }

    /// A batch read and signed, ready to publish.
    struct Prepared: Sendable {
        var rows: [OutboxMessage]
        var messages: [OutgoingMessage]
    }

    /// A batch handed to the producer whose delivery results are still to come.
    struct InFlight: Sendable {
        var rows: [OutboxMessage]
        var delivery: PendingDelivery
    }

    /// Publishes every pending row, batch after batch, with up to two batches in flight: a batch is
    /// handed to the producer (in order, after the one before); then, all at once, the one before is
    /// settled, the acknowledged rows of the one before that are marked sent, and the next one is read
    /// and signed. When a row fails, no further batch is handed over, and its key's later rows, in its
    /// batch and in the one after, stay pending with it; the next pass starts again from the oldest
    /// pending row.
    /// - Returns: How many rows were published and marked sent.
    /// - Throws: A store error.
    @discardableResult
    public func drain() async throws -> Int {
        try await drain(.all) { true }
    }

    /// Publishes the pending rows of `shards` as ``drain()`` does, handing no batch to the
    /// transport once `held` returns false (the lease on `shards` ran out).
    func drain(_ shards: OutboxShards, while held: () -> Bool) async throws -> Int {
        var total = 0
        var heldKeys: Set<String> = []
        var inFlight: InFlight?
        var acknowledged: [Int64] = []
        var next: Prepared? = try await prepare(after: 0, shards: shards)
        while let batch = next, let last = batch.rows.last, held() {
            let delivery = await producer.enqueueBatch(batch.messages)
            let full = batch.rows.count == configuration.batchSize
            async let following = full ? prepare(after: last.sequence, shards: shards) : nil
            let marking = acknowledged
            async let marked: Void = markSent(marking)
            total += marking.count
            var complete = true
            acknowledged = []
            if let previous = inFlight {
                (acknowledged, complete) = await settle(previous, holding: &heldKeys)
            }
            inFlight = InFlight(rows: batch.rows, delivery: delivery)
            try await marked
            next = complete ? try await following : nil
        }
        if let last = inFlight {
            let (sent, _) = await settle(last, holding: &heldKeys)
            acknowledged += sent
        }
        try await markSent(acknowledged)
        return total + acknowledged.count
    }

    /// Reads up to a batch of pending rows after `sequence` and signs them (one Ed25519 signature
    /// per ``OutboxMessage/signatureBatchSize`` rows), on several cores.
    func prepare(after sequence: Int64, shards: OutboxShards) async throws -> Prepared {
        let rows = try await store.pendingOutbox(after: sequence, limit: configuration.batchSize, shards: shards)
        let signingKey = self.signingKey
        guard rows.count > 4 * OutboxMessage.signatureBatchSize else {
            return Prepared(rows: rows, messages: try OutboxMessage.wireMessages(rows, signedWith: signingKey))
        }
        // Split the work across the cores, in whole signature batches.
        let parts = max(1, min(8, ProcessInfo.processInfo.activeProcessorCount))
        let batches = (rows.count + OutboxMessage.signatureBatchSize - 1) / OutboxMessage.signatureBatchSize
        let size = (batches + parts - 1) / parts * OutboxMessage.signatureBatchSize
        let chunks = try await withThrowingTaskGroup(of: (Int, [OutgoingMessage]).self) { group in
            for (index, start) in stride(from: 0, to: rows.count, by: size).enumerated() {
                let slice = Array(rows[start..<min(start + size, rows.count)])
                group.addTask { (index, try OutboxMessage.wireMessages(slice, signedWith: signingKey)) }
            }
            var chunks: [(Int, [OutgoingMessage])] = []
            for try await chunk in group { chunks.append(chunk) }
            return chunks
        }
        return Prepared(rows: rows, messages: chunks.sorted { $0.0 < $1.0 }.flatMap(\.1))
    }

    /// Waits for a batch's delivery results. At graceful shutdown they are no longer awaited: the
    /// rows stay pending (published again by the next relay, deduplicated by the host), so that a
    /// stop during a broker outage does not wait for the transport's delivery timeout (30 s).
    /// - Parameter heldKeys: Keys with a failed row: their later rows stay pending. Rows that fail
    ///   add their key.
    /// - Returns: The sequences of the rows to mark sent (acknowledged, and not after a failed row of
    ///   their key), and whether no row failed.
    func settle(_ batch: InFlight, holding heldKeys: inout Set<String>) async -> (sent: [Int64], complete: Bool) {
        let delivery = batch.delivery
        let awaited = await cancelWhenGracefulShutdown { await abandoningOnCancel { await delivery.results() } }
        guard let results = awaited else {
            logger.info(
                "stopping: outbox rows whose delivery was not confirmed stay pending",
                metadata: ["rows": "\(batch.rows.count)"])
            return ([], false)
        }
        let acknowledgedAt = Date()
        var sent: [Int64] = []
        sent.reserveCapacity(batch.rows.count)
        var complete = true
        for (row, result) in zip(batch.rows, results) {
            switch result {
            case .success where heldKeys.isEmpty || !heldKeys.contains(row.key):
                sent.append(row.sequence)
                OutboxMetrics.published(row, at: acknowledgedAt)
            case .success:
                // Published after an earlier row of its key failed: leave it pending so the pair
                // is re-sent in order (the duplicate is deduplicated by the host).
                break
            case .failure(let error):
                complete = false
                OutboxMetrics.publishFailed(row)
                heldKeys.insert(row.key)
                logger.warning(
                    "outbox message not published; will retry",
                    metadata: [
                        "seq": "\(row.sequence)", "key": "\(row.key)", "run_id": "\(row.runId ?? "")",
                        "error": "\(error)",
                    ])
            }
        }
        return (sent, complete)
    }

    private func markSent(_ sequences: [Int64]) async throws {
        guard !sequences.isEmpty else { return }
        try await store.markOutboxSent(sequences: sequences)
    }
}

/// The outbox shards this relay holds and until when, by this process's clock.
final class LeasedShards: Sendable {
    private struct Held {
        var shards: OutboxShards
        /// nil: held for as long as the store is open.
        var validUntil: ContinuousClock.Instant?
    }
    private let held = Mutex<Held?>(nil)

    func update(_ shards: OutboxShards, validUntil: ContinuousClock.Instant?) {
        held.withLock { $0 = Held(shards: shards, validUntil: validUntil) }
    }

    /// The shards held now; nil when the lease ran out (or was never granted).
    func current() -> OutboxShards? {
        held.withLock { held in
            guard let held else { return nil }
            if let validUntil = held.validUntil, validUntil <= .now { return nil }
            return held.shards
        }
    }

    /// Whether every shard of `shards` is still held.
    func holds(_ shards: OutboxShards) -> Bool {
        current()?.contains(shards) ?? false
    }
}

/// Wakes the outbox relay when its store appended rows, so dispatch latency is not bound by the
/// relay's idle interval. Holds at most one pending signal (bounded).
public final class OutboxSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    public init() {}

    /// Signals that new rows may be pending.
    public func notify() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns when signalled (or a signal is pending) or after `duration`, whichever is first.
    func wait(upTo duration: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.nextSignal() }
            await group.next()
            group.cancelAll()
        }
    }

    private func nextSignal() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    // A cancelled waiter must not park: its cancellation handler may already have run.
                    if state.pending {
                        state.pending = false
                        return true
                    }
                    if Task.isCancelled { return true }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
