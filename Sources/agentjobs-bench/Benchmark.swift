import AgentJobsCore
import AgentJobsSQLite
import AgentJobsStore
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The whole benchmark: raw SQLite baselines, the store called in-process, then the live HTTP API,
/// all in one run on fresh databases in a temporary directory.
struct Benchmark {
    static let goalTriggersPerSecond = 10_000.0

    let options: BenchOptions

    /// Runs every phase and returns the report.
    /// - Throws: When a phase cannot run (no `agentjobs` binary, the server does not start, a store error).
    func run(machine: MachineInfo) async throws -> BenchReport {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }

        let binary = try ServerProcess.locateBinary()

        progress("raw SQLite baseline: 1 insert per transaction")
        let single = try await offPool {
            try RawSQLiteBaseline.measure(
                path: root.appendingPathComponent("raw-single.sqlite").path, rows: 20_000, rowsPerTransaction: 1,
                timeLimit: .seconds(3))
        }
        progress("raw SQLite baseline: 500 inserts per transaction")
        let batched = try await offPool {
            try RawSQLiteBaseline.measure(
                path: root.appendingPathComponent("raw-batched.sqlite").path, rows: 100_000, rowsPerTransaction: 500,
                timeLimit: .seconds(5))
        }

        let store = try await measureStore(directory: root.appendingPathComponent("store"))
        let generators = options.loadGenerators
        let http = try await measureHTTP(
            directory: root.appendingPathComponent("http"), binary: binary, generator: generators[0])
        var otherHTTP: [BenchReport.HTTPFigures] = []
        for generator in generators.dropFirst() {
            otherHTTP.append(
                try await measureHTTP(
                    directory: root.appendingPathComponent("http-\(generator.rawValue)"), binary: binary,
                    generator: generator))
        }

        return BenchReport(
            date: Date(), machine: machine,
            settings: .init(
                jobs: options.jobs, warmup: options.warmup, concurrency: options.concurrency,
                loadGenerator: generators[0].description, durability: "WAL, synchronous=FULL (every commit fsynced)",
                serverBinary: binary.path),
            rawSQLite: .init(onePerTransaction: single, batched: batched), store: store, http: http,
            otherHTTP: otherHTTP, goalTriggersPerSecond: Self.goalTriggersPerSecond)
    }

    /// `SQLiteStore.triggerRun` called directly, `concurrency` at a time: the API without HTTP.
    private func measureStore(directory: URL) async throws -> BenchReport.StoreFigures {
        progress("store-level: creating \(options.warmup + options.jobs) jobs")
        let (fixture, store) = try await Fixture.prepare(directory: directory, jobCount: options.warmup + options.jobs)
        let trigger: @Sendable (String) async -> Outcome = { await triggerOutcome(store, jobId: $0) }
        progress("store-level: triggering \(options.jobs) jobs, \(options.concurrency) concurrent")
        _ = await runLoad(
            items: fixture.jobIds.prefix(options.warmup), concurrency: options.concurrency, operation: trigger)
        let pid = getpid()
        let before = CPUSample.take(pids: [pid])
        let run = await runLoad(
            items: fixture.jobIds.dropFirst(options.warmup), concurrency: options.concurrency, operation: trigger)
        let after = CPUSample.take(pids: [pid])
        await store.close()
        return .init(
            jobsCreated: fixture.jobIds.count, jobCreationSeconds: fixture.creationSeconds,
            triggers: ThroughputFigure(run, concurrency: options.concurrency),
            cpu: CPUUsage(from: before, to: after, wallSeconds: run.elapsed.seconds, serverPid: nil, benchPid: pid))
    }

    /// `POST /api/v1/jobs/{id}/runs` against `agentjobs dev`, each job once, sent by `generator`.
    /// - Parameter environment: Settings for the server (the telemetry phase's variants).
    func measureHTTP(
        directory: URL, binary: URL, generator: BenchOptions.LoadGenerator, environment: [String: String] = [:]
    ) async throws -> BenchReport.HTTPFigures {
        progress("HTTP (\(generator.rawValue)): creating \(options.warmup + options.jobs) jobs")
        let (fixture, store) = try await Fixture.prepare(directory: directory, jobCount: options.warmup + options.jobs)
        await store.close()
        progress("HTTP: starting \(binary.path) dev")
        let server = try await ServerProcess.start(
            binary: binary, dataDir: directory, logFile: directory.appendingPathComponent("server.log"),
            environment: environment)
        let outcome: Result<(LoadRun, CPUUsage), any Error>
        do {
            switch generator {
            case .socket: outcome = .success(try await driveWithSockets(server: server, fixture: fixture))
            case .asyncHTTPClient: outcome = .success(try await drive(server: server, fixture: fixture))
            }
        } catch {
            outcome = .failure(error)
        }
        await server.stop()
        let (run, cpu) = try outcome.get()
        // Every 201 must be a durable run: count them after the server has shut down.
        let runsStored = try await offPool {
            try SQLiteConnection(path: fixture.databasePath).count("SELECT count(*) FROM runs")
        }
        return .init(
            loadGenerator: generator.rawValue, jobsCreated: fixture.jobIds.count,
            jobCreationSeconds: fixture.creationSeconds, port: server.port,
            triggers: ThroughputFigure(run, concurrency: options.concurrency), cpu: cpu, runsStored: Int(runsStored),
            serverExitStatus: server.exitStatus)
    }

    /// The triggers sent by ``SocketLoadGenerator``: warm-up (opens the connections), then the
    /// measured jobs on the same connections.
    private func driveWithSockets(server: ServerProcess, fixture: Fixture) async throws -> (LoadRun, CPUUsage) {
        let client = SocketLoadGenerator(
            port: server.port, authorization: "Bearer \(fixture.adminToken)", concurrency: options.concurrency)
        defer { client.close() }
        let path: @Sendable (String) -> String = { "/api/v1/jobs/\($0)/runs" }
        return try await warmUpThenMeasure(server: server, fixture: fixture) { jobs in
            await client.run(items: jobs, path: path)
        }
    }

    /// Sends the warm-up triggers (which open the connections; a failure there stops the benchmark),
    /// then the measured ones, sampling the CPU of the server and of this process around the latter.
    private func warmUpThenMeasure(
        server: ServerProcess, fixture: Fixture, _ send: (ArraySlice<String>) async -> LoadRun
    ) async throws -> (LoadRun, CPUUsage) {
        progress("HTTP: warming up on \(options.warmup) jobs (opens the \(options.concurrency) connections)")
        let warmup = await send(fixture.jobIds.prefix(options.warmup))
        if warmup.failureCount > 0 {
            let examples = warmup.failureDetails.map { "\($0.key): \($0.value)" }.joined(separator: "\n  ")
            throw ServerProcess.Failure(
                message: "\(warmup.failureCount) of \(warmup.operations) warm-up triggers failed:\n  \(examples)")
        }
        progress("HTTP: triggering \(options.jobs) jobs, \(options.concurrency) in flight")
        let pids = [server.pid, getpid()]
        let before = CPUSample.take(pids: pids)
        let run = await send(fixture.jobIds.dropFirst(options.warmup))
        let after = CPUSample.take(pids: pids)
        return (
            run,
            CPUUsage(
                from: before, to: after, wallSeconds: run.elapsed.seconds, serverPid: server.pid, benchPid: getpid())
        )
    }

    private func drive(server: ServerProcess, fixture: Fixture) async throws -> (LoadRun, CPUUsage) {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(
            idleTimeout: .seconds(120), concurrentHTTP1ConnectionsPerHostSoftLimit: options.concurrency)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        do {
            let base = "http://127.0.0.1:\(server.port)/api/v1/jobs/"
            let authorization = "Bearer \(fixture.adminToken)"
            let trigger: @Sendable (String) async -> Outcome = { jobId in
                var request = HTTPClientRequest(url: base + jobId + "/runs")
                request.method = .POST
                request.headers.add(name: "Authorization", value: authorization)
                do {
                    let response = try await client.execute(request, timeout: .seconds(60))
                    let body = try await response.body.collect(upTo: 1 << 20)
                    if response.status == .created { return .success }
                    return .failure(
                        kind: "HTTP \(response.status.code)", detail: String(String(buffer: body).prefix(500)))
                } catch {
                    return .failure(kind: String(describing: type(of: error)), detail: String(describing: error))
                }
            }
            let result = try await warmUpThenMeasure(server: server, fixture: fixture) { jobs in
                await runLoad(items: jobs, concurrency: options.concurrency, operation: trigger)
            }
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

/// Progress on stderr, so that stdout carries only the report.
func progress(_ message: String) {
    FileHandle.standardError.write(Data("agentjobs-bench: \(message)\n".utf8))
}

/// `store.triggerRun` of `jobId` (an API trigger, now) as a load outcome: the store-level cases' one
/// operation, on SQLite and on PostgreSQL.
func triggerOutcome(_ store: any Store, jobId: String) async -> Outcome {
    do {
        _ = try await store.triggerRun(jobId: jobId, trigger: .api, scheduledAt: nil, now: Date())
        return .success
    } catch let error as StoreError {
        return .failure(kind: error.code.rawValue, detail: error.description)
    } catch {
        return .failure(kind: String(describing: type(of: error)), detail: String(describing: error))
    }
}
