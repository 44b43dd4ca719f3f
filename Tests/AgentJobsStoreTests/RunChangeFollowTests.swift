import AgentJobsCore
import AgentJobsPostgres
import AgentJobsStore
import AgentJobsTestSupport
import Foundation
import Synchronization
import Testing

/// `followRunChanges` hears of changes made by another store object on the same database (another
/// replica, another role), and of nothing else.
@Suite("Following run changes")
struct RunChangeFollowTests {
    /// Two store objects on one fresh database: one follows, the other writes.
    static func openTwo(_ kind: StoreKind) async throws -> (
        follower: any Store, writer: any Store, cleanup: @Sendable () async -> Void
    ) {
        switch kind {
        case .sqlite:
            let (store, cleanup) = try await kind.open()
            let path = try #require(store as? SQLiteStore).path
            let writer = try SQLiteStore(path: path)
            return (
                store, writer,
                {
                    await writer.close()
                    await cleanup()
                }
            )
        case .postgres:
            let (_, configuration, drop) = try await TestPostgres.freshDatabase()
            let follower = try await PostgresStore.connect(configuration, logger: TestPostgres.logger)
            let writer = try await PostgresStore.connect(configuration, logger: TestPostgres.logger)
            return (
                follower, writer,
                {
                    await writer.close()
                    await follower.close()
                    await drop()
                }
            )
        }
    }

    /// How many times `changed` was called.
    final class Calls: Sendable {
        private let count = Mutex(0)
        var value: Int { count.withLock { $0 } }
        func add() { count.withLock { $0 += 1 } }
    }

    /// Waits up to 20 s for `calls` to pass `count`.
    static func waitForCall(after count: Int, _ calls: Calls, _ what: Comment) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while calls.value <= count {
            guard ContinuousClock.now < deadline else {
                Issue.record("no change reported after \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test(
        "runs created and changed by another writer are reported; writes that change no run are not",
        arguments: StoreKind.allCases)
    func changesOfAnotherWriter(kind: StoreKind) async throws {
        let (follower, writer, cleanup) = try await Self.openTwo(kind)
        let calls = Calls()
        let following = Task { try await follower.followRunChanges { calls.add() } }
        try await Self.waitForCall(after: 0, calls, "starting to follow")

        // Writes that change no run: a host, a job, a token.
        let fixture = try await Fixture(writer)
        let job = try await fixture.job()
        _ = try await writer.createAPIToken(name: "t", scope: .read, by: nil, now: fixture.now)
        try await Task.sleep(for: .seconds(1))
        #expect(calls.value == 1, "only the first call, on starting to follow")

        var seen = calls.value
        let run = try await writer.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: fixture.now)
        try await Self.waitForCall(after: seen, calls, "a run was created")

        seen = calls.value
        _ = try await writer.requestCancel(runId: run.id, now: fixture.now)
        try await Self.waitForCall(after: seen, calls, "a run was canceled")

        following.cancel()
        await #expect(throws: CancellationError.self) { try await following.value }
        await cleanup()
    }
}
