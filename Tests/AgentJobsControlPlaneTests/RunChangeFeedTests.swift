import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsStore
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// The long polls of `GET /api/v1/runs/changes` (``RunChangeFeed``) on a real store.
@Suite("Run change feed")
struct RunChangeFeedTests {
    /// A wait no answer in these tests may reach unless the feed failed to wake it.
    static let longWait: Duration = .seconds(50)

    /// Starts following the fixture's store and returns the first live token.
    static func following(_ fixture: APIFixture) async throws -> (token: String, task: Task<Void, Never>) {
        let feed = fixture.api.runChanges
        let task = Task { [store = fixture.store] in await feed.follow(store, logger: Logger(label: "test")) }
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let answer = await feed.next(after: nil, wait: .zero)
            if answer.live { return (answer.token, task) }
            try await Task.sleep(for: .milliseconds(20))
        }
        task.cancel()
        throw CancellationError()
    }

    @Test("a poll with the current token is answered when a run changes, with the next token")
    func answeredOnChange() async throws {
        let fixture = try await APIFixture.make()
        let (token, following) = try await Self.following(fixture)
        let feed = fixture.api.runChanges
        let started = ContinuousClock.now
        let poll = Task { await feed.next(after: token, wait: Self.longWait) }
        try await Task.sleep(for: .milliseconds(300))
        let job = try await fixture.store.createJob(
            JobDefinition(
                name: "nightly", hostId: fixture.hostId, agentType: .datahealth,
                parameters: .file(fileName: "checks.yaml")), now: Date())
        _ = try await fixture.store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: Date())
        let answer = await poll.value
        #expect(answer.changed && answer.live && answer.token != token)
        #expect(ContinuousClock.now - started < .seconds(30), "answered by the change, not by the wait")

        // The next poll, with the new token and nothing changing, waits out its wait.
        let quiet = await feed.next(after: answer.token, wait: .seconds(1))
        #expect(quiet == .init(token: answer.token, changed: false, live: true))
        following.cancel()
        await following.value
        await fixture.cleanup()
    }

    @Test("another replica's or an earlier process's token is answered at once as a change")
    func foreignToken() async throws {
        let fixture = try await APIFixture.make()
        let (token, following) = try await Self.following(fixture)
        let other = RunChangeFeed()
        let started = ContinuousClock.now
        for foreign in ["0-0", "nope", String(token.dropLast()) + "x"] {
            let answer = await fixture.api.runChanges.next(after: foreign, wait: Self.longWait)
            #expect(answer == .init(token: token, changed: true, live: true))
        }
        // A feed that does not follow its store answers at once, not live.
        let lonely = await other.next(after: nil, wait: Self.longWait)
        #expect(!lonely.live && lonely.changed)
        #expect(ContinuousClock.now - started < .seconds(30))
        following.cancel()
        await following.value
        await fixture.cleanup()
    }

    @Test("closing (a graceful shutdown) answers the waiting polls at once, and later ones are not live")
    func closeReleasesPolls() async throws {
        let fixture = try await APIFixture.make()
        let (token, following) = try await Self.following(fixture)
        let feed = fixture.api.runChanges
        let started = ContinuousClock.now
        let polls = (0..<20).map { _ in Task { await feed.next(after: token, wait: Self.longWait) } }
        try await Task.sleep(for: .milliseconds(300))
        feed.close()
        for poll in polls {
            let answer = await poll.value
            #expect(answer == .init(token: token, changed: false, live: false))
        }
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(await feed.next(after: token, wait: Self.longWait).live == false)
        following.cancel()
        await following.value
        await fixture.cleanup()
    }

    @Test("a cancelled poll (the client went away) ends at once")
    func cancelledPoll() async throws {
        let fixture = try await APIFixture.make()
        let (token, following) = try await Self.following(fixture)
        let feed = fixture.api.runChanges
        let started = ContinuousClock.now
        let poll = Task { await feed.next(after: token, wait: Self.longWait) }
        try await Task.sleep(for: .milliseconds(300))
        poll.cancel()
        #expect(await poll.value.changed == false)
        #expect(ContinuousClock.now - started < .seconds(30))
        following.cancel()
        await following.value
        await fixture.cleanup()
    }

    @Test("the HTTP route answers with the token, and waits on it for a change")
    func overHTTP() async throws {
        let fixture = try await APIFixture.make()
        let (_, following) = try await Self.following(fixture)
        try await fixture.application().test(.router) { client in
            let first = try await client.call(.get, "/api/v1/runs/changes", token: fixture.reader)
            #expect(first.status == .ok)
            let token = try #require(first.json["token"]?.string)
            #expect(first.json["changed"] == .bool(true) && first.json["live"] == .bool(true))
            let quiet = try await client.call(
                .get, "/api/v1/runs/changes?after=\(token)&waitSeconds=1", token: fixture.reader)
            #expect(quiet.json == .object(["token": .string(token), "changed": .bool(false), "live": .bool(true)]))
            let job = try await client.call(.post, "/api/v1/jobs", token: fixture.writer, body: fixture.jobBody())
            let jobId = try #require(job.json["id"]?.string)
            async let changed = client.call(
                .get, "/api/v1/runs/changes?after=\(token)&waitSeconds=50", token: fixture.reader)
            try await Task.sleep(for: .milliseconds(300))
            #expect(
                try await client.call(.post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer).status == .created)
            let answer = try await changed
            #expect(answer.json["changed"] == .bool(true) && answer.json["token"]?.string != token)
        }
        following.cancel()
        await following.value
        await fixture.cleanup()
    }
}
