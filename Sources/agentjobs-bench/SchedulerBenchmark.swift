import AgentJobsControlPlane
import AgentJobsCore
import AgentJobsStore
import Foundation
import Logging
import Synchronization

/// Issue 6's measurement: 100,000 scheduled jobs in the store; how long one minute's due set takes
/// to fire, and the firing lag of each occurrence (from its scheduled instant to the commit of its
/// run), for an ordinary minute and for a hot minute that many jobs share.
struct SchedulerBenchmark {
    static let goalLagP99Seconds = 1.0

    struct Minute: Codable, Sendable {
        var label: String
        var due: Int
        var started: Int
        var passSeconds: Double
        var lagP50Seconds: Double
        var lagP99Seconds: Double
        var lagMaxSeconds: Double
    }

    struct Figures: Codable, Sendable {
        var jobs: Int
        var setupSeconds: Double
        var minutes: [Minute]
        var goalLagP99Seconds: Double
        var goalMet: Bool
    }

    /// Records when the scheduler logs each started occurrence (it logs after the commit).
    final class Stamps: Sendable {
        let instants = Mutex<[ContinuousClock.Instant]>([])
        func reset() { instants.withLock { $0.removeAll(keepingCapacity: true) } }
    }

    struct StampingLogHandler: LogHandler {
        let stamps: Stamps
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            if event.message.description == "schedule occurrence", case .string("started")? = event.metadata?["outcome"]
            {
                let now = ContinuousClock.now
                stamps.instants.withLock { $0.append(now) }
            }
        }
    }

    /// - Parameters:
    ///   - directory: A scratch directory for the database.
    ///   - jobs: Scheduled jobs to create; a tenth of them share minute 0 (the hot minute), the rest
    ///     are spread over minutes 1-59.
    static func run(directory: URL, jobs: Int, progress: (String) -> Void) async throws -> Figures {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = try SQLiteStore(path: directory.appendingPathComponent("scheduler.sqlite").path)
        let hour = Date(timeIntervalSince1970: 1_772_409_600)  // 2026-03-02 00:00 UTC
        let created = hour.addingTimeInterval(-30)
        let (_, registration) = try await store.createRegistrationToken(
            expiresAt: created.addingTimeInterval(60), now: created)
        let host = try await store.registerHost(
            registrationTokenHash: registration.hash, name: "bench", managedAgents: [.datahealth],
            credential: Secret.generate(prefix: "ajh"), now: created)
        progress("scheduler: creating \(jobs) scheduled jobs")
        let setupStart = ContinuousClock.now
        let hot = jobs / 10
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                let index = next
                next += 1
                let minute = index < hot ? 0 : 1 + index % 59
                group.addTask {
                    _ = try await store.createJob(
                        JobDefinition(
                            name: "scheduled-\(index)", hostId: host.id, agentType: .datahealth,
                            parameters: .file(fileName: "f\(index)"), schedule: JobSchedule(cron: "\(minute) * * * *")),
                        now: created)
                }
            }
            for _ in 0..<min(256, jobs) { add() }
            while try await group.next() != nil { if next < jobs { add() } }
        }
        let setupSeconds = (ContinuousClock.now - setupStart).seconds

        let stamps = Stamps()
        let scheduler = Scheduler(
            store: store, logger: Logger(label: "bench") { _ in StampingLogHandler(stamps: stamps) })
        var minutes: [Minute] = []
        for (label, instant) in [
            ("hot minute (minute 0)", hour), ("ordinary minute (minute 1)", hour.addingTimeInterval(60)),
        ] {
            progress("scheduler: firing the \(label)")
            stamps.reset()
            let passStart = ContinuousClock.now
            let recorded = try await scheduler.tick(now: instant)
            let passSeconds = (ContinuousClock.now - passStart).seconds
            // The pass starts at the scheduled instant (the scheduler wakes on the boundary), so an
            // occurrence's lag is the time from the pass start to the commit of its run.
            let lags = stamps.instants.withLock { $0 }.map { ($0 - passStart).seconds }.sorted()
            minutes.append(
                Minute(
                    label: label, due: recorded.count, started: recorded.filter { $0.outcome == .started }.count,
                    passSeconds: passSeconds, lagP50Seconds: percentile(lags, 0.50),
                    lagP99Seconds: percentile(lags, 0.99),
                    lagMaxSeconds: lags.last ?? 0))
        }
        await store.close()
        let goalMet = minutes.allSatisfy { $0.lagP99Seconds <= goalLagP99Seconds }
        return Figures(
            jobs: jobs, setupSeconds: setupSeconds, minutes: minutes, goalLagP99Seconds: goalLagP99Seconds,
            goalMet: goalMet)
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }

    static func text(_ figures: Figures) -> String {
        var lines = [
            "Scheduler (\(figures.jobs) scheduled jobs; created in \(String(format: "%.1f", figures.setupSeconds)) s)"
        ]
        for minute in figures.minutes {
            lines.append(
                "  \(minute.label): \(minute.due) due, \(minute.started) started, pass \(String(format: "%.3f", minute.passSeconds)) s, "
                    + "lag p50 \(String(format: "%.3f", minute.lagP50Seconds)) s, p99 \(String(format: "%.3f", minute.lagP99Seconds)) s, "
                    + "max \(String(format: "%.3f", minute.lagMaxSeconds)) s")
        }
        lines.append(
            "  goal: lag p99 <= \(figures.goalLagP99Seconds) s: \(figures.goalMet ? "met" : "NOT met")"
                + " (the pass is aligned to the minute boundary; add up to 5 ms of wake-up delay)")
        return lines.joined(separator: "\n")
    }
}
