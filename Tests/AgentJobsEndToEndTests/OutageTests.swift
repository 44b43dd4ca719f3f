import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Testing

/// Restarting the aggregator (which also tracks hosts) changes nothing a user sees but timing: no
/// host is shown offline, no run is given up as host lost, every run ends as its agent did.
@Suite(
    "Outages end to end", .serialized, .timeLimit(.minutes(6 + 2 * LongOutage.seconds / 60)),
    .enabled(if: EndToEnd.shouldRun, EndToEnd.skipReason))
struct OutageTests {
    @Test(
        "kill -9 of the aggregator for 8 s and then 60 s while 20 runs run on three hosts: no host offline, no run lost, all succeed"
    )
    func aggregatorKilled() async throws {
        // The user's defaults: a 30 s offline grace, a 10 s group session, 5 s heartbeats.
        try await Cluster.run(userDefaults: true) { cluster in
            var hosts: [String] = []
            for name in ["a", "b", "c"] { hosts.append(try await cluster.addHost(name: "outage-\(name)")) }
            // 20 runs over the three hosts whose agents run until the test lets them finish.
            var runs: [(run: String, host: String)] = []
            for index in 0..<20 {
                let host = hosts[index % hosts.count]
                let job = try await cluster.createJob(hostId: host, parameters: #"{"fileName":"wait-for-go"}"#)
                runs.append((try await cluster.api.trigger(job), host))
            }
            for entry in runs { try await cluster.waitForStatus(entry.run, "running") }

            let outages =
                [Duration.seconds(8), .seconds(60)] + (LongOutage.seconds > 0 ? [.seconds(LongOutage.seconds)] : [])
            for outage in outages {
                await cluster.aggregators[0].kill9()
                // Watch what users see while host tracking is down, and until it is back.
                var seen: Set<String> = []
                let outageEnd = ContinuousClock.now + outage
                while ContinuousClock.now < outageEnd {
                    seen.formUnion(try await Self.hostStatuses(cluster, hosts))
                    try await Task.sleep(for: .seconds(1))
                }
                let restart = ContinuousClock.now
                try await cluster.restartAggregator(0)
                // A new run's events are applied again: the time from the restart to its end.
                let probe = try await cluster.api.trigger(try await cluster.createJob(hostId: hosts[0]))
                while try await cluster.api.call(.GET, "/runs/\(probe)", expect: 200)["status"]?.string != "succeeded" {
                    seen.formUnion(try await Self.hostStatuses(cluster, hosts))
                    guard ContinuousClock.now - restart < .seconds(90) else {
                        Issue.record("events were not applied within 90 s of the aggregator's restart")
                        return
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
                let resumed = ContinuousClock.now - restart
                print("aggregator killed for \(outage): events applied again \(resumed) after the restart")
                #expect(resumed < .seconds(30), "events resumed only \(resumed) after the restart")
                // Every host is online again within a heartbeat or two of tracking catching up.
                for host in hosts { try await cluster.waitForHost(host, status: "online", timeout: .seconds(30)) }
                #expect(
                    !seen.contains("offline"),
                    "a heartbeating host was shown offline during a \(outage) outage: \(seen)")
                for entry in runs {
                    let run = try await cluster.api.call(.GET, "/runs/\(entry.run)", expect: 200)
                    #expect(run["status"]?.string == "running", "after a \(outage) outage: \(run)")
                }
            }

            for entry in runs {
                let directory = try #require(cluster.hostDirectories[entry.host])
                #expect(
                    FileManager.default.createFile(
                        atPath: directory.appendingPathComponent("runs/\(entry.run)/go").path, contents: nil))
            }
            for entry in runs {
                let done = try await cluster.waitForStatus(entry.run, "succeeded", timeout: .seconds(60))
                #expect(done["errorSummary"] == .null, "\(done)")
            }
        }
    }

    static func hostStatuses(_ cluster: Cluster, _ hosts: [String]) async throws -> Set<String> {
        var statuses: Set<String> = []
        for host in hosts {
            statuses.insert(try await cluster.api.call(.GET, "/hosts/\(host)", expect: 200)["status"]?.string ?? "?")
        }
        return statuses
    }
}

/// A longer outage that `make soak` adds (`AGENTJOBS_SOAK_AGGREGATOR_OUTAGE_SECONDS`, 300 there).
enum LongOutage {
    static let seconds =
        ProcessInfo.processInfo.environment["AGENTJOBS_SOAK_AGGREGATOR_OUTAGE_SECONDS"].flatMap(Int.init) ?? 0
}
