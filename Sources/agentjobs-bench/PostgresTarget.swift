import AgentJobsCore
import AgentJobsPostgres
import AgentJobsStore
import Foundation
import Logging
import PostgresNIO

// MARK: - The server and its databases

/// The PostgreSQL server the phase runs on: its superuser URL (maintenance database) and configuration.
struct PostgresTarget: Sendable {
    var url: String
    var configuration: PostgresStore.Configuration

    /// The server's version and durability settings, and its processes when they run here.
    func readSettings(logger: Logger) async throws -> (PostgresBenchmark.ServerSettings, PostgresProcesses?) {
        try await configuration.withConnection(logger: logger) { connection in
            func setting(_ name: String) async throws -> String {
                try await PostgresStore.Configuration.texts(
                    "SELECT current_setting('\(name)')", on: connection, logger: logger
                ).first ?? "?"
            }
            let backend = try await PostgresStore.Configuration.texts(
                "SELECT pg_backend_pid()::text", on: connection, logger: logger
            ).first.flatMap { Int32($0) }
            let processes = backend.flatMap(PostgresProcesses.init(backend:))
            let version = try await setting("server_version")
            let fsync = try await setting("fsync")
            let synchronousCommit = try await setting("synchronous_commit")
            let sharedBuffers = try await setting("shared_buffers")
            let maxConnections = try await setting("max_connections")
            let settings = PostgresBenchmark.ServerSettings(
                address: "\(configuration.host):\(configuration.port)", version: version, fsync: fsync,
                synchronousCommit: synchronousCommit, sharedBuffers: sharedBuffers,
                maxConnections: Int(maxConnections) ?? 100, processesFound: processes != nil)
            return (settings, processes)
        }
    }

    /// Runs `body` on a new, empty database, dropped afterwards (`WITH (FORCE)`: sessions a failed
    /// case left open do not keep it).
    func withScratchDatabase<T: Sendable>(
        logger: Logger, _ body: (ScratchDatabase) async throws -> T
    ) async throws -> T {
        let name = "bench_" + String(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16))
        try await PostgresStore.execute("CREATE DATABASE \(name)", on: configuration, logger: logger)
        var database = configuration
        database.database = name
        let scratch = ScratchDatabase(url: Self.databaseURL(url, name: name), configuration: database)
        do {
            let result = try await body(scratch)
            await drop(name, logger: logger)
            return result
        } catch {
            await drop(name, logger: logger)
            throw error
        }
    }

    private func drop(_ name: String, logger: Logger) async {
        do {
            try await PostgresStore.execute(
                "DROP DATABASE IF EXISTS \(name) WITH (FORCE)", on: configuration, logger: logger)
        } catch {
            progress("postgres: could not drop the database \(name): \(PostgresBenchmark.describe(error))")
        }
    }

    /// `serverURL` naming the database `name` instead of its own (its user, password, host and parameters kept).
    static func databaseURL(_ serverURL: String, name: String) -> String {
        let text = serverURL.trimmingCharacters(in: .whitespacesAndNewlines)
        let afterUser = text.lastIndex(of: "@").map { text.index(after: $0) } ?? text.startIndex
        let query = text[afterUser...].firstIndex(of: "?")
        let pathStart = text[afterUser..<(query ?? text.endIndex)].firstIndex(of: "/") ?? query ?? text.endIndex
        return String(text[..<pathStart]) + "/" + name + (query.map { String(text[$0...]) } ?? "")
    }
}

/// A database of one case's own: the URL a `serve` replica gets and the configuration of the bench's stores.
struct ScratchDatabase: Sendable {
    var url: String
    var configuration: PostgresStore.Configuration
}

extension PostgresStore.Configuration {
    /// Runs `body` on a connection of its own, outside any store (reading settings and counts).
    func withConnection<T: Sendable>(
        logger: Logger, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        var connectionTLS: PostgresConnection.Configuration.TLS = .disable
        if tls != .disable {
            // As the store does: `prefer`/`require` verify no certificate, `verify-ca` the chain.
            var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
            switch tls {
            case .disable, .prefer, .require: tlsConfiguration.certificateVerification = .none
            case .verifyCA: tlsConfiguration.certificateVerification = .noHostnameVerification
            case .verifyFull: tlsConfiguration.certificateVerification = .fullVerification
            }
            let context = try NIOSSLContext(configuration: tlsConfiguration)
            connectionTLS = tls == .prefer ? .prefer(context) : .require(context)
        }
        let connection = try await PostgresConnection.connect(
            configuration: PostgresConnection.Configuration(
                host: host, port: port, username: username, password: password, database: database,
                tls: connectionTLS),
            id: 1, logger: logger)
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// The first column of every row `sql` returns, as text, on a connection of its own.
    func texts(_ sql: String, logger: Logger) async throws -> [String] {
        try await withConnection(logger: logger) { try await Self.texts(sql, on: $0, logger: logger) }
    }

    static func texts(_ sql: String, on connection: PostgresConnection, logger: Logger) async throws -> [String] {
        let rows = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        var values: [String] = []
        for try await value in rows.decode(String.self) { values.append(value) }
        return values
    }
}

/// The PostgreSQL server's processes on this machine — the postmaster and its children — for their
/// CPU time. Found from a backend's parent; absent when the server runs elsewhere (or in another
/// PID namespace).
struct PostgresProcesses: Sendable {
    var postmaster: Int32

    /// - Parameter backend: The pid of a session's backend, while the session is open.
    init?(backend: Int32) {
        guard Self.command(backend) == "postgres", let parent = Self.stat(backend)?.parent,
            Self.command(parent) == "postgres"
        else { return nil }
        postmaster = parent
    }

    /// user + system jiffies of the postmaster, of its live children and of its reaped children:
    /// a backend that exits between two samples moves its time from the second term to the third,
    /// so a difference of two readings counts it once.
    func jiffies() -> Int64 {
        var total: Int64 = 0
        if let own = Self.stat(postmaster) { total += own.time + own.reapedChildren }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != postmaster, let stat = Self.stat(pid), stat.parent == postmaster
            else { continue }
            total += stat.time
        }
        return total
    }

    private static func stat(_ pid: Int32) -> (parent: Int32, time: Int64, reapedChildren: Int64)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // After the command name: field 3 (state), 4 (ppid), … 14-17 (utime, stime, cutime, cstime).
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 14, let parent = Int32(fields[1]), let user = Int64(fields[11]),
            let system = Int64(fields[12]), let childUser = Int64(fields[13]), let childSystem = Int64(fields[14])
        else { return nil }
        return (parent, user + system, childUser + childSystem)
    }

    private static func command(_ pid: Int32) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

// MARK: - Fixture

/// What the PostgreSQL cases trigger: an admin token, one host managing `datahealth` and jobs on
/// it, created through the store as ``Fixture`` does on SQLite.
struct PostgresJobFixture: Sendable {
    var adminToken: String
    /// The one host every job runs on, and the credential its events are signed with.
    var hostId: String
    var hostCredential: Secret
    /// Every job, each without a run; the first `warmup` are for warming up.
    var jobIds: [String]
    var creationSeconds: Double

    /// Creates the jobs `chunk` at a time concurrently, so that the store commits them in groups.
    static func prepare(on store: PostgresStore, jobCount: Int, chunk: Int = 2_048) async throws -> PostgresJobFixture {
        let now = Date()
        let (_, adminSecret) = try await store.createAPIToken(name: "bench admin", scope: .admin, now: now)
        let (_, registration) = try await store.createRegistrationToken(
            expiresAt: now.addingTimeInterval(600), now: now)
        let credential = Secret.generate(prefix: "ajh")
        let host = try await store.registerHost(
            registrationTokenHash: registration.hash, name: "bench", managedAgents: [.datahealth],
            credential: credential, now: now)
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
        return PostgresJobFixture(
            adminToken: adminSecret.value, hostId: host.id, hostCredential: credential, jobIds: jobIds,
            creationSeconds: start.duration(to: clock.now).seconds)
    }
}
