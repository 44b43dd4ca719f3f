import AgentJobsAggregator
import AgentJobsCore
import AgentJobsEmbeddedLog
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// `StatusAggregator` in process on the embedded log and SQLite, with the test playing the hosts
/// (real registered credentials, signed events): a batch is applied in one transaction, its run
/// records and dead letters are published, and only then are its offsets committed; an outage of
/// the store or the transport holds the commit back and is retried; a replay changes no finished run.
///
/// The aggregator and its consumer run with the user's defaults (batch size, 1 s retry interval,
/// lease duration); only the store and the producer it is given are wrapped, to watch them (what
/// each transaction applied, what each publish sent, and the committed offsets just before each)
/// and to switch them off.
@Suite("Status aggregator", .timeLimit(.minutes(1)))
struct StatusAggregatorTests {
    /// The consumer group of the aggregator (the default of `agentjobs dev`, `serve` and `aggregate`).
    static let group = "agentjobs-aggregator"

    // MARK: Tests

    @Test(
        "a batch of signed events from the runs' host sets every run's status, publishes one record per status change, and is committed only after it was applied and its records were stored"
    )
    func appliesPublishesThenCommits() async throws {
        try await Self.withBench { bench in
            let host = try await bench.host("played")
            let runs = try await bench.queuedRuns(3, on: host)
            let t0 = Self.nextWholeSecond()
            let events = runs.flatMap { Self.succeeding($0, from: host, at: t0) }
            let positions = try await bench.send(try Self.signed(events, with: host.key))
            let positionOf = Dictionary(uniqueKeysWithValues: zip(events.map(Self.eventKey), positions))

            let store = bench.observedStore(group: Self.group)
            let producer = bench.observedProducer(group: Self.group)
            let aggregator = bench.startAggregator(store: store, producer: producer, group: Self.group)
            try await waitUntil("the aggregator commits every event") {
                try await bench.committed(Self.group) == Self.ends(positions)
            }
            try await aggregator.stop()

            Self.expectSucceeded(try await bench.stored(runs), at: t0)
            let transactions = store.snapshot.transactions
            // Every event went through exactly one successful transaction.
            #expect(transactions.flatMap(\.events).map(Self.eventKey).sorted() == events.map(Self.eventKey).sorted())
            for transaction in transactions {
                for (event, outcome) in zip(transaction.events, transaction.outcomes) {
                    // `accepted` changes no status; `started` and `succeeded` each move the run.
                    #expect(
                        Self.isApplied(outcome) == (event.type != .accepted),
                        "\(event.type.rawValue) of \(event.runId) had outcome \(outcome)")
                    // Commit after apply: no event was committed before its transaction.
                    let position = try #require(positionOf[Self.eventKey(event)])
                    let committed = transaction.committedBefore[position.topicPartition] ?? 0
                    #expect(
                        committed <= position.offset,
                        "\(position) was committed (next offset \(committed)) before its event was applied")
                }
            }

            let publishes = producer.snapshot.publishes
            #expect(publishes.flatMap(\.messages).allSatisfy { $0.topic == Topic.runStatus }, "no dead letters")
            let records = try Self.records(in: publishes)
            Self.expectOneRecordPerChange(of: runs, in: records, finishedAt: t0.addingTimeInterval(5))
            // Commit after publish: a run's terminal record was sent while its `succeeded` event was
            // still uncommitted.
            for publish in publishes {
                for message in publish.messages where message.topic == Topic.runStatus {
                    let record = try PublishedRecord(message).record
                    guard record.revision == 3 else { continue }
                    let terminal = try #require(positionOf["\(record.run.id)#3"])
                    let committed = publish.committedBefore[terminal.topicPartition] ?? 0
                    #expect(
                        committed <= terminal.offset,
                        "\(terminal) was committed (next offset \(committed)) before the record of \(record.run.id) was published"
                    )
                }
            }
            // The records are in `agentjobs.run-status`, where the producer said it stored them.
            var published: [MessagePosition: [UInt8]] = [:]
            for publish in publishes {
                for (position, message) in zip(publish.positions, publish.messages) {
                    published[position] = message.value
                }
            }
            let onTopic = try await bench.read(through: Array(published.keys))
            let read = Dictionary(uniqueKeysWithValues: onTopic.map { ($0.position, $0.value) })
            #expect(onTopic.allSatisfy { $0.topic == Topic.runStatus })
            #expect(read == published)
        }
    }

    @Test(
        "undecodable, forged, unknown-host and wrong-host events are dead-lettered with their reason, change no run, and are committed"
    )
    func deadLettersHostileEvents() async throws {
        try await Self.withBench { bench in
            let host = try await bench.host("played")
            let neighbour = try await bench.host("neighbour")
            let target = try await bench.queuedRun(on: host, job: "target")
            let control = try await bench.queuedRun(on: host, job: "control")
            let t0 = Self.nextWholeSecond()

            // Each would fail the target run if it were trusted.
            let garbage = OutgoingMessage(topic: Topic.runEvents, key: target.id, value: Array("not an event".utf8))
            let forged = try Self.event(
                .failed, target, host: host.id, sequence: 3, at: t0, exitCode: 9, summary: "forged"
            )
            .message(signedWith: HostEventKey(credential: "ajh_not_the_credential"))
            let stranger = try Self.event(
                .failed, target, host: "host-unregistered", sequence: 3, at: t0, exitCode: 9, summary: "stranger"
            )
            .message(signedWith: HostEventKey(credential: "ajh_stranger"))
            let fromNeighbour = try Self.event(
                .failed, target, host: neighbour.id, sequence: 3, at: t0, exitCode: 9, summary: "neighbour"
            )
            .message(signedWith: neighbour.key)
            let hostile = [garbage, forged, stranger, fromNeighbour]
            let reasons = ["missing_header", "bad_signature", "unknown_host", "wrong_host"]
            // In the same batch, a run the host really finished.
            let good = try Self.signed(Self.succeeding(control, from: host, at: t0), with: host.key)
            let positions = try await bench.send(hostile + good)
            let targetBefore = try #require(try await bench.store.run(id: target.id))

            let producer = bench.observedProducer(group: Self.group)
            let aggregator = bench.startAggregator(store: bench.store, producer: producer, group: Self.group)
            try await waitUntil("the aggregator commits every message, the dead-lettered ones included") {
                try await bench.committed(Self.group) == Self.ends(positions)
            }
            try await aggregator.stop()

            #expect(targetBefore.status == .queued)
            #expect(try await bench.store.run(id: target.id) == targetBefore)
            #expect(try await bench.store.run(id: control.id)?.status == .succeeded)

            var letterPositions: [MessagePosition] = []
            var recordedRuns: Set<String> = []
            for publish in producer.snapshot.publishes {
                for (position, message) in zip(publish.positions, publish.messages) {
                    if message.topic == Topic.deadLetter { letterPositions.append(position) }
                    if message.topic == Topic.runStatus {
                        recordedRuns.insert(try PublishedRecord(message).record.run.id)
                    }
                }
            }
            // No record of the target: nothing about it reached the store's state.
            #expect(recordedRuns == [control.id])
            let letters = try await bench.read(through: letterPositions)
            #expect(letters.count == hostile.count)
            for (index, message) in hostile.enumerated() {
                let original = positions[index]
                let match = letters.first(where: {
                    $0.header(WireHeader.originalPartition)?.stringValue == String(original.topicPartition.partition)
                        && $0.header(WireHeader.originalOffset)?.stringValue == String(original.offset)
                })
                let letter = try #require(match, "no dead letter for the \(reasons[index]) message at \(original)")
                let reason = letter.header(WireHeader.deadLetterReason)?.stringValue ?? ""
                #expect(reason.hasPrefix(reasons[index] + ":"), "dead letter of \(original): \(reason)")
                #expect(letter.topic == Topic.deadLetter)
                #expect(letter.header(WireHeader.originalTopic)?.stringValue == Topic.runEvents)
                #expect(letter.keyString == target.id)
                #expect(letter.value == message.value)
            }
        }
    }

    @Test(
        "while the store is unavailable nothing is applied, published or committed; once it is back every event is applied exactly once and then committed"
    )
    func retriesAStoreOutage() async throws {
        try await Self.withBench { bench in
            let host = try await bench.host("played")
            let runs = try await bench.queuedRuns(3, on: host)
            let t0 = Self.nextWholeSecond()
            let events = runs.flatMap { Self.succeeding($0, from: host, at: t0) }
            let positions = try await bench.send(try Self.signed(events, with: host.key))

            let store = bench.observedStore(group: Self.group)
            store.availability.withLock { $0 = .unavailable }
            let producer = bench.observedProducer(group: Self.group)
            let aggregator = bench.startAggregator(store: store, producer: producer, group: Self.group)
            // The hosts' keys cannot be read: verifying the batch is retried.
            try await waitUntil("the aggregator retries reading the host's key") {
                store.snapshot.failedLookups >= 2
            }
            // The keys can be read but transactions still fail: applying the batch is retried.
            store.availability.withLock { $0 = .transactionsFail }
            try await waitUntil("the aggregator retries the batch's transaction") {
                store.snapshot.failedTransactions >= 2
            }
            #expect(try await bench.committed(Self.group).isEmpty)
            #expect(producer.snapshot.publishes.isEmpty)
            #expect(store.snapshot.transactions.isEmpty)
            #expect(try await bench.stored(runs).map(\.status) == [.queued, .queued, .queued])

            store.availability.withLock { $0 = .available }
            try await waitUntil("the aggregator commits every event once the store is back") {
                try await bench.committed(Self.group) == Self.ends(positions)
            }
            try await aggregator.stop()

            #expect(
                store.snapshot.transactions.flatMap(\.events).map(Self.eventKey).sorted()
                    == events.map(Self.eventKey).sorted())
            Self.expectSucceeded(try await bench.stored(runs), at: t0)
            let publishes = producer.snapshot.publishes
            #expect(publishes.flatMap(\.messages).allSatisfy { $0.topic == Topic.runStatus }, "no dead letters")
            Self.expectOneRecordPerChange(
                of: runs, in: try Self.records(in: publishes), finishedAt: t0.addingTimeInterval(5))
        }
    }

    @Test(
        "while run records cannot be published the events are applied but not committed; once the transport is back each record is published once and the events are committed"
    )
    func retriesAPublishOutage() async throws {
        try await Self.withBench { bench in
            let host = try await bench.host("played")
            let runs = try await bench.queuedRuns(3, on: host)
            let t0 = Self.nextWholeSecond()
            let events = runs.flatMap { Self.succeeding($0, from: host, at: t0) }
            let positions = try await bench.send(try Self.signed(events, with: host.key))

            let store = bench.observedStore(group: Self.group)
            let producer = bench.observedProducer(group: Self.group)
            producer.failing.withLock { $0 = true }
            let aggregator = bench.startAggregator(store: store, producer: producer, group: Self.group)
            try await waitUntil("the aggregator applies a batch and retries publishing its records") {
                !store.snapshot.transactions.isEmpty && producer.snapshot.failedAttempts >= 2
            }
            #expect(try await bench.committed(Self.group).isEmpty)
            #expect(producer.snapshot.publishes.isEmpty)
            // The store is ahead of the transport: the first batch is in it already.
            let first = try #require(store.snapshot.transactions.first)
            for event in first.events where event.type == .succeeded {
                #expect(try await bench.store.run(id: event.runId)?.status == .succeeded)
            }

            producer.failing.withLock { $0 = false }
            try await waitUntil("the aggregator commits every event once the transport is back") {
                try await bench.committed(Self.group) == Self.ends(positions)
            }
            try await aggregator.stop()

            #expect(
                store.snapshot.transactions.flatMap(\.events).map(Self.eventKey).sorted()
                    == events.map(Self.eventKey).sorted())
            Self.expectSucceeded(try await bench.stored(runs), at: t0)
            let publishes = producer.snapshot.publishes
            #expect(publishes.flatMap(\.messages).allSatisfy { $0.topic == Topic.runStatus }, "no dead letters")
            Self.expectOneRecordPerChange(
                of: runs, in: try Self.records(in: publishes), finishedAt: t0.addingTimeInterval(5))
        }
    }

    @Test(
        "a replica that takes over after a stop between apply and commit changes no finished run and publishes the records the first could not"
    )
    func takeoverAfterApplyBeforeCommit() async throws {
        try await Self.withBench { bench in
            let host = try await bench.host("played")
            let runs = try await bench.queuedRuns(3, on: host)
            let t0 = Self.nextWholeSecond()
            let events = runs.flatMap { Self.succeeding($0, from: host, at: t0) }
            let positions = try await bench.send(try Self.signed(events, with: host.key))

            // The first replica applies everything but can publish nothing, and is stopped (SIGTERM).
            let firstProducer = bench.observedProducer(group: Self.group)
            firstProducer.failing.withLock { $0 = true }
            let first = bench.startAggregator(store: bench.store, producer: firstProducer, group: Self.group)
            try await waitUntil("the first replica applies every event while its records cannot be published") {
                guard firstProducer.snapshot.failedAttempts >= 1 else { return false }
                return try await bench.stored(runs).allSatisfy { $0.status == .succeeded }
            }
            let appliedByFirst = try await bench.stored(runs)
            try await first.stop()
            #expect(try await bench.committed(Self.group).isEmpty)
            #expect(firstProducer.snapshot.publishes.isEmpty)

            // The second replica re-reads the uncommitted events of the same group.
            let secondStore = bench.observedStore(group: Self.group)
            let secondProducer = bench.observedProducer(group: Self.group)
            let second = bench.startAggregator(store: secondStore, producer: secondProducer, group: Self.group)
            try await waitUntil("the second replica commits every event") {
                try await bench.committed(Self.group) == Self.ends(positions)
            }
            try await second.stop()

            #expect(try await bench.stored(runs) == appliedByFirst)
            Self.expectSucceeded(appliedByFirst, at: t0)
            let outcomes = secondStore.snapshot.transactions.flatMap(\.outcomes)
            #expect(outcomes.count == events.count)
            #expect(outcomes.allSatisfy(Self.isIgnored), "a replayed event changed a run: \(outcomes)")
            let records = try Self.records(in: secondProducer.snapshot.publishes)
            for run in appliedByFirst {
                let ofRun = records.filter { $0.record.run.id == run.id }
                // Published now, and only as the run is: finished (a replay never yields an older revision).
                #expect(!ofRun.isEmpty, "the record of \(run.id) was never published")
                #expect(ofRun.allSatisfy { $0.record.revision == 3 && $0.record.run.status == .succeeded })
                #expect(ofRun.allSatisfy { $0.record.run.finishedAt == run.finishedAt && $0.record.run.exitCode == 0 })
                #expect(Set(ofRun.map(\.body)).count == 1, "different records of \(run.id) were published")
            }
        }
    }

    @Test(
        "a second aggregator re-reading every event, with a late duplicate and a conflicting failure, changes no finished run and publishes no other terminal record"
    )
    func replayIsIdempotent() async throws {
        try await Self.withBench { bench in
            let host = try await bench.host("played")
            let runs = try await bench.queuedRuns(2, on: host)
            let t0 = Self.nextWholeSecond()
            let events = runs.flatMap { Self.succeeding($0, from: host, at: t0) }
            let positions = try await bench.send(try Self.signed(events, with: host.key))

            let firstProducer = bench.observedProducer(group: Self.group)
            let first = bench.startAggregator(store: bench.store, producer: firstProducer, group: Self.group)
            try await waitUntil("the first aggregator commits every event") {
                try await bench.committed(Self.group) == Self.ends(positions)
            }
            try await first.stop()
            let finished = try await bench.stored(runs)
            Self.expectSucceeded(finished, at: t0)

            // A confused or replaying host: the success again, then a failure of the finished run.
            let late = [
                Self.event(.succeeded, runs[0], host: host.id, sequence: 3, at: t0.addingTimeInterval(5), exitCode: 0),
                Self.event(
                    .failed, runs[0], host: host.id, sequence: 4, at: t0.addingTimeInterval(9), exitCode: 9,
                    summary: "late failure"),
            ]
            let latePositions = try await bench.send(try Self.signed(late, with: host.key))

            // A group with no commits reads the topic from its start.
            let replay = "agentjobs-aggregator-replay"
            let secondStore = bench.observedStore(group: replay)
            let secondProducer = bench.observedProducer(group: replay)
            let second = bench.startAggregator(store: secondStore, producer: secondProducer, group: replay)
            try await waitUntil("the second aggregator commits every event") {
                try await bench.committed(replay) == Self.ends(positions + latePositions)
            }
            try await second.stop()

            #expect(try await bench.stored(runs) == finished)
            let outcomes = secondStore.snapshot.transactions.flatMap(\.outcomes)
            #expect(outcomes.count == events.count + late.count)
            #expect(outcomes.allSatisfy(Self.isIgnored), "a replayed event changed a run: \(outcomes)")
            let firstRecords = try Self.records(in: firstProducer.snapshot.publishes)
            let replayed = try Self.records(in: secondProducer.snapshot.publishes)
            #expect(
                !(firstRecords + replayed).contains { $0.record.run.status == .failed }, "a failed record was published"
            )
            for run in finished {
                let terminal = (firstRecords + replayed).filter {
                    $0.record.run.id == run.id && $0.record.revision == 3
                }
                #expect(firstRecords.filter { $0.record.run.id == run.id && $0.record.revision == 3 }.count == 1)
                // A re-published record is the same record (same body, hence the same run and revision).
                #expect(Set(terminal.map(\.body)).count == 1, "different terminal records of \(run.id) were published")
                #expect(replayed.filter { $0.record.run.id == run.id }.allSatisfy { $0.record.revision == 3 })
            }
        }
    }
}
