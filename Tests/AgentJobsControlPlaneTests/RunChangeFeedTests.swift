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

    /// Waits up to 20 s for `feed` to follow its store.
    static func waitUntilLive(_ feed: RunChangeFeed) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while await !feed.next(after: nil, wait: .zero).live {
            guard ContinuousClock.now < deadline else { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(20))
        }
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

    @Test(
        "another replica's token is taken as current when this one heard of no change since it was given, and is a change otherwise"
    )
    func foreignToken() async throws {
        try await Self.withFollowingFeed { fixture, token in
            // A second replica's feed on the same database.
            let other = RunChangeFeed()
            let following = Task { [store = fixture.store] in await other.follow(store, logger: Logger(label: "test")) }
            try await Self.waitUntilLive(other)
            // Its first change (on starting to follow) must be older than the token's age + 2 s.
            try await Task.sleep(for: .seconds(3))
            let started = ContinuousClock.now

            // A token received 100 ms ago, with no change since: the other replica waits on it.
            let quiet = await other.next(after: token, age: .milliseconds(100), wait: .seconds(1))
            #expect(!quiet.changed && quiet.live && quiet.token != token)

            // ... and is woken by the next change.
            let poll = Task { await other.next(after: token, age: .milliseconds(100), wait: Self.longWait) }
            try await Task.sleep(for: .milliseconds(300))
            let job = try await fixture.store.createJob(
                JobDefinition(
                    name: "nightly", hostId: fixture.hostId, agentType: .datahealth,
                    parameters: .file(fileName: "checks.yaml")), now: Date())
            _ = try await fixture.store.triggerRun(jobId: job.id, trigger: .manual, scheduledAt: nil, now: Date())
            let woken = await poll.value
            #expect(woken.changed && woken.live)
            #expect(ContinuousClock.now - started < .seconds(30), "answered by the change, not by the wait")

            // A token given before that change (its age says so), or without an age, or an older
            // token of this feed: answered at once as a change.
            let cases: [(String, Duration?)] = [
                (token, .seconds(30)), (token, nil), (quiet.token, .milliseconds(100)),
                // Not the form of a token: never taken as current.
                ("0-0", .milliseconds(100)), ("nope", .milliseconds(100)), (token + "x", .milliseconds(100)),
            ]
            for (after, age) in cases {
                let answer = await other.next(after: after, age: age, wait: Self.longWait)
                #expect(answer.changed && answer.live, "\(after), \(String(describing: age))")
            }
            #expect(ContinuousClock.now - started < .seconds(30))

            // A feed that does not follow its store answers at once, not live.
            let lonely = await RunChangeFeed().next(after: nil, wait: Self.longWait)
            #expect(!lonely.live && lonely.changed)
            following.cancel()
            await following.value
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
