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

    /// Runs `body` with a fresh fixture whose feed follows its store, and the feed's first live
    /// token; stops following and cleans up after it.
    static func withFollowingFeed(_ body: (APIFixture, String) async throws -> Void) async throws {
        let fixture = try await APIFixture.make()
        let feed = fixture.api.runChanges
        let following = Task { [store = fixture.store] in await feed.follow(store, logger: Logger(label: "test")) }
        do {
            var token: String?
            let deadline = ContinuousClock.now + .seconds(20)
            while token == nil, ContinuousClock.now < deadline {
                let answer = await feed.next(after: nil, wait: .zero)
                if answer.live { token = answer.token } else { try await Task.sleep(for: .milliseconds(20)) }
            }
            try await body(fixture, try #require(token, "the feed never became live"))
        } catch {
            following.cancel()
            await following.value
            await fixture.cleanup()
            throw error
        }
        following.cancel()
        await following.value
        await fixture.cleanup()
    }

    @Test("a poll with the current token is answered when a run changes, with the next token")
    func answeredOnChange() async throws {
        try await Self.withFollowingFeed { fixture, token in
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
        }
    }

    @Test("another replica's or an earlier process's token is answered at once as a change")
    func foreignToken() async throws {
        try await Self.withFollowingFeed { fixture, token in
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
        }
    }

    @Test("closing (a graceful shutdown) answers the waiting polls at once, and later ones are not live")
    func closeReleasesPolls() async throws {
        try await Self.withFollowingFeed { fixture, token in
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
        }
    }

    @Test("a cancelled poll (the client went away) ends at once")
    func cancelledPoll() async throws {
        try await Self.withFollowingFeed { fixture, token in
            let feed = fixture.api.runChanges
            let started = ContinuousClock.now
            let poll = Task { await feed.next(after: token, wait: Self.longWait) }
            try await Task.sleep(for: .milliseconds(300))
            poll.cancel()
            #expect(await poll.value.changed == false)
            #expect(ContinuousClock.now - started < .seconds(30))
        }
    }

    @Test("the HTTP route answers with the token, and waits on it for a change")
    func overHTTP() async throws {
        try await Self.withFollowingFeed { fixture, _ in
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
                    try await client.call(.post, "/api/v1/jobs/\(jobId)/runs", token: fixture.writer).status == .created
                )
                let answer = try await changed
                #expect(answer.json["changed"] == .bool(true) && answer.json["token"]?.string != token)
            }
        }
    }
}
