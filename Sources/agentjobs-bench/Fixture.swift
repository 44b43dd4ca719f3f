import AgentJobsCore
import AgentJobsStore
import Foundation

/// A data dir laid out the way `agentjobs dev` expects it, filled with jobs to trigger.
struct Fixture: Sendable {
    var directory: URL
    var adminToken: String
    var hostId: String
    /// Every job, each without a run; the first `warmup` are for warming up.
    var jobIds: [String]
    var creationSeconds: Double

    var databasePath: String { directory.appendingPathComponent("agentjobs.sqlite").path }

    /// Creates the admin token (written to `admin-token`, so `agentjobs dev` makes no other), one
    /// host managing `datahealth`, and `jobCount` jobs on it, through the store.
    ///
    /// The jobs are created `chunk` at a time concurrently so that the store commits them in groups.
    /// - Returns: The fixture and the still-open store.
    /// - Throws: What the store throws.
    static func prepare(directory: URL, jobCount: Int, chunk: Int = 2_048) async throws -> (Fixture, SQLiteStore) {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = try SQLiteStore(path: directory.appendingPathComponent("agentjobs.sqlite").path)
        do {
            let now = Date()
            let (_, adminSecret) = try await store.createAPIToken(name: "bench admin", scope: .admin, now: now)
            _ = FileManager.default.createFile(
                atPath: directory.appendingPathComponent("admin-token").path,
                contents: Data((adminSecret.value + "\n").utf8), attributes: [.posixPermissions: 0o600])
            let (_, registration) = try await store.createRegistrationToken(
                expiresAt: now.addingTimeInterval(600), now: now)
            let host = try await store.registerHost(
                registrationTokenHash: registration.hash, name: "bench", managedAgents: [.datahealth],
                credential: Secret.generate(prefix: "ajh"), now: now)

            let clock = ContinuousClock()
            let start = clock.now
            var jobIds: [String] = []
            jobIds.reserveCapacity(jobCount)
            for chunkStart in stride(from: 0, to: jobCount, by: chunk) {
                let indices = chunkStart..<min(chunkStart + chunk, jobCount)
                let created = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                    for index in indices {
                        group.addTask {
                            let definition = JobDefinition(
                                name: "bench-\(index)", hostId: host.id, agentType: .datahealth,
                                parameters: .file(fileName: "bench-\(index).csv"))
                            return (index, try await store.createJob(definition, now: Date()).id)
                        }
                    }
                    var created: [(Int, String)] = []
                    for try await job in group { created.append(job) }
                    return created
                }
                jobIds.append(contentsOf: created.sorted { $0.0 < $1.0 }.map(\.1))
            }
            let fixture = Fixture(
                directory: directory, adminToken: adminSecret.value, hostId: host.id, jobIds: jobIds,
                creationSeconds: start.duration(to: clock.now).seconds)
            return (fixture, store)
        } catch {
            await store.close()
            throw error
        }
    }
}
