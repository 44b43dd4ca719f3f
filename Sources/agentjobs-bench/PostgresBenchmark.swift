import AgentJobsCore
import AgentJobsPostgres
import AgentJobsStore
import Foundation
import Logging
import PostgresNIO

/// The `postgres` phase: run triggers on one PostgreSQL database, from what the database itself
/// does (`pgbench` writing a trigger's rows) through `PostgresStore.triggerRun` in-process to the
/// HTTP API of one and of two `agentjobs serve` replicas. Each case works on a database of its own,
/// created on the server `AGENTJOBS_BENCH_POSTGRES_URL` names and dropped afterwards.
enum PostgresBenchmark {
    static let urlVariable = "AGENTJOBS_BENCH_POSTGRES_URL"
    static let skipReason =
        "\(urlVariable) is not set: the postgres phase is skipped (make bench starts a throw-away PostgreSQL"
        + " when it is installed and sets it)"
    static let goalTriggersPerSecond = 5_000.0
    static let goalShareOfRaw = 0.5
    /// The store-level case's pool (`PostgresStore.Configuration.maximumConnections`); the `serve`
    /// replicas keep the URL's `pool_size` (the user's default unless the URL sets one).
    static let storePoolSize = 20
    static let pgbenchSeconds = 8
    /// Connections pgbench leaves to everyone else (the superuser's reserve, other sessions).
    static let spareConnections = 20

    struct Figures: Codable, Sendable {
        /// Why the whole phase did not run.
        var skipped: String?
        var server: ServerSettings?
        var jobs: Int
        var warmup: Int
        var concurrency: Int
        var raw: RawFigures?
        var rawSkipped: String?
        var store: StoreFigures?
        var relay: RelayFigures?
        var relaySkipped: String?
        /// One replica, then two.
        var http: [HTTPFigures] = []
        var httpSkipped: String?
        var aggregator: [AggregatorFigures] = []
        var rawUpdates: RawUpdateFigures?
        var goals: Goals?
        var failures: [String] = []
    }

    struct ServerSettings: Codable, Sendable {
        var address: String
        var version: String
        var fsync: String
        var synchronousCommit: String
        var sharedBuffers: String
        var maxConnections: Int
        /// Whether the server's processes were found on this machine (their CPU is then reported).
        var processesFound: Bool
    }

    struct RawFigures: Codable, Sendable {
        var pgbench: String
        var statement: String
        var clients: Int
        var threads: Int
        var seconds: Int
        var transactions: Int?
        var transactionsPerSecond: Double
        var latencyAverageMilliseconds: Double?
        var failedTransactions: Int?
        /// The outbox payload written per transaction: a real `RunDispatch`'s JSON.
        var payloadBytes: Int
        var cpu: CPU
    }

    struct StoreFigures: Codable, Sendable {
        var poolSize: Int
        var jobsCreated: Int
        var jobCreationSeconds: Double
        var triggers: ThroughputFigure
        var cpu: CPU
    }

    struct HTTPFigures: Codable, Sendable {
        var replicas: Int
        /// Each replica's store pool (the URL's `pool_size`).
        var poolSizePerReplica: Int
        var jobsCreated: Int
        var jobCreationSeconds: Double
        var ports: [Int]
        /// All replicas' measured triggers together; wall time is the slower load generator's.
        var triggers: ThroughputFigure
        var cpu: CPU
        /// Answers 201, warm-up included.
        var answered201: Int
        /// Runs in the database after every replica stopped.
        var runsStored: Int
        var serverExitStatuses: [Int32?]
    }

    struct Goals: Codable, Sendable {
        var triggersPerSecond: Double
        var shareOfRaw: Double
        /// `nil`: a figure the goal needs was not measured.
        var oneReplicaRateMet: Bool?
        var oneReplicaShareOfRawMet: Bool?
        var secondReplicaAddsMet: Bool?
    }

    /// CPU-seconds between two samples: `serve` processes, this process, the PostgreSQL server's
    /// processes (when they run on this machine) and everything else.
    struct CPU: Codable, Sendable {
        var wallSeconds: Double
        var machineBusyFraction: Double
        var serverSeconds: Double?
        var benchSeconds: Double
        var postgresSeconds: Double?
        var otherSeconds: Double

        struct Point {
            var sample: CPUSample
            var postgres: Int64?
            var at: ContinuousClock.Instant

            static func take(servers: [Int32], postgres: PostgresProcesses?) -> Point {
                Point(
                    sample: CPUSample.take(pids: servers + [getpid()]), postgres: postgres?.jiffies(),
                    at: ContinuousClock.now)
            }
        }

        init(from start: Point, to end: Point, servers: [Int32]) {
            func seconds(_ jiffies: Int64) -> Double { Double(jiffies) / CPUSample.ticksPerSecond }
            func process(_ pid: Int32) -> Double {
                seconds((end.sample.processes[pid] ?? 0) - (start.sample.processes[pid] ?? 0))
            }
            wallSeconds = start.at.duration(to: end.at).seconds
            let total = end.sample.machineTotal - start.sample.machineTotal
            let busy = end.sample.machineBusy - start.sample.machineBusy
            machineBusyFraction = total > 0 ? Double(busy) / Double(total) : 0
            serverSeconds = servers.isEmpty ? nil : servers.map(process).reduce(0, +)
            benchSeconds = process(getpid())
            if let before = start.postgres, let after = end.postgres {
                postgresSeconds = seconds(after - before)
            }
            otherSeconds = max(0, seconds(busy) - (serverSeconds ?? 0) - benchSeconds - (postgresSeconds ?? 0))
        }
    }

    // MARK: Running

    /// Runs every case the environment allows; failures are recorded, not thrown.
    static func run(
        options: BenchOptions, directory: URL, kafka: KafkaTarget?, progress: (String) -> Void
    ) async -> Figures {
        var figures = Figures(jobs: options.jobs, warmup: options.warmup, concurrency: options.concurrency)
        guard let url = ProcessInfo.processInfo.environment[urlVariable]?.trimmingCharacters(in: .whitespaces),
            !url.isEmpty
        else {
            figures.skipped = skipReason
            return figures
        }
        let logger = quietLogger("bench.postgres")
        let target: PostgresTarget
        let processes: PostgresProcesses?
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            target = PostgresTarget(
                url: url, configuration: try PostgresStore.Configuration(url: url, passwordFile: nil))
            let (settings, found) = try await target.readSettings(logger: logger)
            figures.server = settings
            processes = found
        } catch {
            figures.failures.append("\(urlVariable): \(describe(error))")
            return figures
        }

        if let pgbench = locatePgbench() {
            let clients = max(1, min(options.concurrency, (figures.server?.maxConnections ?? 100) - spareConnections))
            progress("postgres: raw baseline, \(pgbench.path) with \(clients) clients for \(pgbenchSeconds) s")
            do {
                figures.raw = try await target.withScratchDatabase(logger: logger) { database in
                    try await measureRaw(
                        pgbench: pgbench, database: database, clients: clients, directory: directory,
                        processes: processes, logger: logger)
                }
                if let raw = figures.raw, raw.failedTransactions ?? 0 > 0 {
                    figures.failures.append("raw pgbench: \(raw.failedTransactions ?? 0) failed transactions")
                }
            } catch {
                figures.failures.append("raw pgbench: \(describe(error))")
            }
        } else {
            figures.rawSkipped = "no pgbench in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        }

        do {
            let (store, relay) = try await target.withScratchDatabase(logger: logger) { database in
                try await measureStore(
                    options: options, database: database, kafka: kafka, processes: processes, logger: logger)
            }
            figures.store = store
            switch relay {
            case .success(let relay)?:
                figures.relay = relay
                if relay.leftPending > 0 { figures.failures.append("relay: \(relay.leftPending) rows left pending") }
            case .failure(let error)?: figures.failures.append("relay: \(describe(error))")
            case nil: figures.relaySkipped = KafkaTarget.skipReason
            }
            if !store.triggers.failures.isEmpty {
                figures.failures.append("store-level: \(store.triggers.failures.values.reduce(0, +)) triggers failed")
            }
        } catch {
            figures.failures.append("store-level: \(describe(error))")
        }

        if let kafka {
            for replicas in [1, 2] {
                do {
                    let binary = try ServerProcess.locateBinary()
                    let http = try await target.withScratchDatabase(logger: logger) { database in
                        try await measureHTTP(
                            replicas: replicas, options: options, database: database, kafka: kafka, binary: binary,
                            directory: directory.appendingPathComponent("http-\(replicas)"), processes: processes,
                            logger: logger, progress: progress)
                    }
                    figures.http.append(http)
                    let expected = options.jobs + options.warmup
                    if !http.triggers.failures.isEmpty || http.answered201 != expected
                        || http.runsStored != http.answered201
                    {
                        figures.failures.append(
                            "HTTP, \(replicas) replica(s): \(formatCount(http.answered201)) of \(formatCount(expected))"
                                + " triggers answered 201, \(formatCount(http.runsStored)) runs stored")
                    }
                } catch {
                    figures.failures.append("HTTP, \(replicas) replica(s): \(describe(error))")
                }
            }
            for replicas in [1, 2] {
                do {
                    let (aggregator, raw) = try await target.withScratchDatabase(logger: logger) { database in
                        try await measureAggregator(
                            replicas: replicas, runCount: options.jobs, database: database, kafka: kafka,
                            pgbench: replicas == 1 ? locatePgbench() : nil,
                            directory: directory.appendingPathComponent("aggregator-\(replicas)"), processes: processes,
                            logger: logger)
                    }
                    figures.aggregator.append(aggregator)
                    if let raw { figures.rawUpdates = raw }
                } catch {
                    figures.failures.append("aggregator, \(replicas) replica(s): \(describe(error))")
                }
            }
        } else {
            figures.httpSkipped = KafkaTarget.skipReason
        }
        figures.goals = goals(figures)
        return figures
    }

    /// A failure as the report shows it: for the database's errors, the server's message and SQLSTATE
    /// or the client's error code (`PSQLError`'s own description hides them), never a query's values
    /// or the password.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return String(describing: error) }
        if let info = error.serverInfo {
            let message = info[.message] ?? "the server refused the operation"
            return info[.sqlState].map { "\(message) (SQLSTATE \($0))" } ?? message
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }

    private static func goals(_ figures: Figures) -> Goals {
        let one = figures.http.first { $0.replicas == 1 }?.triggers.perSecond
        let two = figures.http.first { $0.replicas == 2 }?.triggers.perSecond
        let raw = figures.raw?.transactionsPerSecond
        return Goals(
            triggersPerSecond: goalTriggersPerSecond, shareOfRaw: goalShareOfRaw,
            oneReplicaRateMet: one.map { $0 >= goalTriggersPerSecond },
            oneReplicaShareOfRawMet: one.flatMap { one in raw.map { one >= goalShareOfRaw * $0 } },
            secondReplicaAddsMet: one.flatMap { one in two.map { $0 > one } })
    }

    // MARK: Case 1: raw pgbench

    /// `pgbench` writing a trigger's rows in one statement per transaction, on the store's migrated
    /// schema (its real tables, indexes and outbox shard function).
    private static func measureRaw(
        pgbench: URL, database: ScratchDatabase, clients: Int, directory: URL, processes: PostgresProcesses?,
        logger: Logger
    ) async throws -> RawFigures {
        // Migrated by the store itself, so that the real tables, indexes and shard function exist.
        let migrated = try await PostgresStore.connect(database.configuration, logger: logger)
        await migrated.close()
        let (statement, payloadBytes) = rawTriggerStatement()
        let script = directory.appendingPathComponent("trigger.pgbench.sql")
        try Data((statement + ";\n").utf8).write(to: script)
        let threads = min(2, clients)
        let arguments = [
            "-n", "-M", "prepared", "-f", script.path, "-c", String(clients), "-j", String(threads), "-T",
            String(pgbenchSeconds),
        ]
        let before = CPU.Point.take(servers: [], postgres: processes)
        let output = try await runPgbench(
            pgbench, arguments: arguments, database: database,
            errors: directory.appendingPathComponent("pgbench.stderr"))
        let after = CPU.Point.take(servers: [], postgres: processes)
        guard let tps = pgbenchFigure(output, prefix: "tps = ") else {
            throw BenchFailure("pgbench printed no tps: \(output.suffix(1_500))")
        }
        return RawFigures(
            pgbench: pgbench.path,
            statement:
                "one INSERT … WITH statement: runs, outbox, outbox_payloads, outbox_unsent (no read of the job)",
            clients: clients, threads: threads, seconds: pgbenchSeconds,
            transactions: pgbenchFigure(output, prefix: "number of transactions actually processed: ").map { Int($0) },
            transactionsPerSecond: tps,
            latencyAverageMilliseconds: pgbenchFigure(output, prefix: "latency average = "),
            failedTransactions: pgbenchFigure(output, prefix: "number of failed transactions: ").map { Int($0) },
            payloadBytes: payloadBytes, cpu: CPU(from: before, to: after, servers: []))
    }

    /// Runs pgbench with `arguments` on `database` and returns what it printed.
    /// - Throws: ``BenchFailure`` with its output when it exits with a failure.
    static func runPgbench(_ pgbench: URL, arguments: [String], database: ScratchDatabase, errors: URL)
        async throws -> String
    {
        // The connection goes through libpq's variables: the password stays off the command line.
        let configuration = database.configuration
        var environment = ProcessInfo.processInfo.environment
        environment["PGHOST"] = configuration.host
        environment["PGPORT"] = String(configuration.port)
        environment["PGUSER"] = configuration.username
        environment["PGPASSWORD"] = configuration.password
        environment["PGDATABASE"] = configuration.database
        environment["PGSSLMODE"] = configuration.tls.rawValue
        let childEnvironment = environment
        let (status, output) = try await offPool { () -> (Int32, String) in
            let process = Process()
            process.executableURL = pgbench
            process.arguments = arguments
            process.environment = childEnvironment
            let pipe = Pipe()
            process.standardOutput = pipe
            _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
            let errorHandle = try FileHandle(forWritingTo: errors)
            process.standardError = errorHandle
            process.standardInput = FileHandle.nullDevice
            // pgbench ends a `-T` run on SIGALRM. A child inherits the spawning thread's signal mask,
            // and Dispatch's worker threads block SIGALRM: unblocked here for the spawn only.
            var alarm = sigset_t()
            var previous = sigset_t()
            sigemptyset(&alarm)
            sigaddset(&alarm, SIGALRM)
            pthread_sigmask(SIG_UNBLOCK, &alarm, &previous)
            defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
            try process.run()
            try? errorHandle.close()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        guard status == 0 else {
            let stderr = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            throw BenchFailure("pgbench exited \(status): \((output + stderr).suffix(1_500))")
        }
        return output
    }

    /// The number after `prefix` on the first line of pgbench's summary that starts with it.
    static func pgbenchFigure(_ output: String, prefix: String) -> Double? {
        for line in output.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix(prefix) else { continue }
            let number = trimmed.dropFirst(prefix.count).prefix { $0.isNumber || $0 == "." }
            return Double(number)
        }
        return nil
    }

    /// The rows `PostgresStore.triggerRun` writes, in one statement: a queued run (its id
    /// time-ordered like the store's, its job id random and unique), its dispatch in the outbox with
    /// the payload of a real `RunDispatch`, and the unsent mark with its shard. The store also reads
    /// the job `FOR SHARE` first; this baseline does not.
    /// - Returns: The statement and the payload's size.
    static func rawTriggerStatement() -> (String, Int) {
        let now = Date()
        let snapshot = JobSnapshot(
            jobId: Identifier.make("job"), jobName: "bench-12345", jobVersion: 1, hostId: Identifier.make("host"),
            agentType: .datahealth, parameters: .file(fileName: "bench-12345.csv"),
            timeoutSeconds: Job.Limits.defaultTimeoutSeconds,
            queueTimeoutSeconds: Job.Limits.defaultQueueTimeoutSeconds)
        let run = Run.queued(of: snapshot, trigger: .api, at: now)
        let payload = RunDispatch(run: run).jsonBytes
        let host = literal(run.hostId)
        let statement = """
            WITH fresh AS (
                SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms,
                       'job_' || substr(md5(gen_random_uuid()::text), 1, 20) AS job_id
            ), inserted_run AS (
                INSERT INTO runs (id, job_id, job_name, job_version, host_id, agent_type, parameters, timeout_seconds,
                                  queue_timeout_seconds, status, trigger, scheduled_at, queued_at, dispatch_epoch)
                SELECT 'run_' || lpad(to_hex(now_ms), 11, '0') || substr(md5(gen_random_uuid()::text), 1, 12), job_id,
                       \(literal(run.jobName)), \(run.jobVersion), \(host), \(literal(run.agentType.rawValue)),
                       \(literal(run.parameters.jsonText)), \(run.timeoutSeconds), \(run.queueTimeoutSeconds),
                       \(literal(run.status.rawValue)), \(literal(run.trigger.rawValue)), NULL, now_ms,
                       \(run.dispatchEpoch)
                FROM fresh
                ON CONFLICT DO NOTHING
                RETURNING id, queued_at
            ), appended AS (
                INSERT INTO outbox (topic, key, type, run_id, created_at)
                SELECT \(literal(Topic.dispatch)), \(host), \(literal(RunDispatch.type)), id, queued_at
                FROM inserted_run
                RETURNING seq
            ), payloads AS (
                INSERT INTO outbox_payloads (seq, payload) SELECT seq, '\\x\(hex(payload))'::bytea FROM appended
            )
            INSERT INTO outbox_unsent (seq, shard) SELECT seq, agentjobs_outbox_shard(\(host)) FROM appended
            """
        return (statement, payload.count)
    }

    /// `text` as an SQL literal pgbench leaves alone: it reads `:name` in a script as a variable, so
    /// text with a colon before a name character goes in as hex-encoded UTF-8.
    private static func literal(_ text: String) -> String {
        let bytes = Array(text.utf8)
        let variableLike = zip(bytes, bytes.dropFirst()).contains { colon, next in
            colon == UInt8(ascii: ":") && (next == UInt8(ascii: "_") || (next < 0x80 && isalnum(Int32(next)) != 0))
        }
        guard variableLike else { return "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }
        return "convert_from('\\x\(hex(bytes))'::bytea, 'UTF8')"
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The newest `pgbench` of Debian's PostgreSQL packages.
    static func locatePgbench() -> URL? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .sorted { $0.compare($1, options: .numeric) == .orderedDescending }
        for version in versions {
            let path = "\(root)/\(version)/bin/pgbench"
            if FileManager.default.isExecutableFile(atPath: path) { return URL(fileURLWithPath: path) }
        }
        return nil
    }

    // MARK: Case 2: store-level

    /// `PostgresStore.triggerRun` called in-process, `concurrency` at a time, on jobs created through
    /// the store: the API without HTTP. Then, with a broker, the relay case on the outbox rows the
    /// triggers wrote.
    private static func measureStore(
        options: BenchOptions, database: ScratchDatabase, kafka: KafkaTarget?, processes: PostgresProcesses?,
        logger: Logger
    ) async throws -> (StoreFigures, Result<RelayFigures, any Error>?) {
        var configuration = database.configuration
        configuration.maximumConnections = storePoolSize
        let store = try await PostgresStore.connect(configuration, logger: logger)
        do {
            progress("postgres: store-level, creating \(formatCount(options.warmup + options.jobs)) jobs")
            let fixture = try await PostgresJobFixture.prepare(on: store, jobCount: options.warmup + options.jobs)
            let trigger: @Sendable (String) async -> Outcome = { await triggerOutcome(store, jobId: $0) }
            progress(
                "postgres: store-level, triggering \(formatCount(options.jobs)) jobs,"
                    + " \(options.concurrency) concurrent")
            _ = await runLoad(
                items: fixture.jobIds.prefix(options.warmup), concurrency: options.concurrency, operation: trigger)
            let before = CPU.Point.take(servers: [], postgres: processes)
            let run = await runLoad(
                items: fixture.jobIds.dropFirst(options.warmup), concurrency: options.concurrency, operation: trigger)
            let after = CPU.Point.take(servers: [], postgres: processes)
            var relay: Result<RelayFigures, any Error>?
            if let kafka {
                do {
                    relay = .success(
                        try await measureRelay(store: store, kafka: kafka, processes: processes, logger: logger))
                } catch {
                    relay = .failure(error)
                }
            }
            await store.close()
            let figures = StoreFigures(
                poolSize: storePoolSize, jobsCreated: fixture.jobIds.count,
                jobCreationSeconds: fixture.creationSeconds,
                triggers: ThroughputFigure(run, concurrency: options.concurrency),
                cpu: CPU(from: before, to: after, servers: []))
            return (figures, relay)
        } catch {
            await store.close()
            throw error
        }
    }

    // MARK: Cases 3 and 4: HTTP through serve replicas

    /// `POST /api/v1/jobs/{id}/runs` through `replicas` `agentjobs serve` processes on one database,
    /// each replica sent its share of the jobs by a ``SocketLoadGenerator`` of its own, all at once.
    private static func measureHTTP(
        replicas: Int, options: BenchOptions, database: ScratchDatabase, kafka: KafkaTarget, binary: URL,
        directory: URL, processes: PostgresProcesses?, logger: Logger, progress: (String) -> Void
    ) async throws -> HTTPFigures {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var configuration = database.configuration
        configuration.maximumConnections = storePoolSize
        progress("postgres: HTTP \(replicas) replica(s), creating \(formatCount(options.warmup + options.jobs)) jobs")
        let store = try await PostgresStore.connect(configuration, logger: logger)
        let fixture: PostgresJobFixture
        do {
            fixture = try await PostgresJobFixture.prepare(on: store, jobCount: options.warmup + options.jobs)
        } catch {
            await store.close()
            throw error
        }
        await store.close()

        var servers: [ServerProcess] = []
        let outcome: Result<(warmup: LoadRun, measured: LoadRun, cpu: CPU), any Error>
        do {
            // Started one after the other: the first creates the shared signing key, the others read it.
            for index in 1...replicas {
                progress("postgres: starting \(binary.path) serve #\(index)")
                var environment = ProcessInfo.processInfo.environment
                environment["AGENTJOBS_DATABASE_URL"] = database.url
                environment["AGENTJOBS_KAFKA_BROKERS"] = kafka.description
                environment["AGENTJOBS_HTTP_ADDRESS"] = "127.0.0.1:0"
                environment["AGENTJOBS_DATA_DIR"] = directory.appendingPathComponent("serve-\(index)").path
                environment["AGENTJOBS_SIGNING_KEY_FILE"] =
                    directory.appendingPathComponent("dispatch-signing.key").path
                environment["AGENTJOBS_LOG_LEVEL"] = "info"
                servers.append(
                    try await ServerProcess.startServe(
                        binary: binary, environment: environment,
                        logFile: directory.appendingPathComponent("serve-\(index).log")))
            }
            outcome = .success(
                try await drive(servers: servers, fixture: fixture, options: options, processes: processes))
        } catch {
            outcome = .failure(error)
        }
        for server in servers { await server.stop() }
        let (warmup, measured, cpu) = try outcome.get()
        // Every 201 must be a durable run: count them after the replicas have shut down.
        let stored = try await database.configuration.texts("SELECT count(*)::text FROM runs", logger: logger)
        return HTTPFigures(
            replicas: replicas,
            poolSizePerReplica: (try? PostgresStore.Configuration(url: database.url, passwordFile: nil))?
                .maximumConnections ?? PostgresStore.Configuration.defaultMaximumConnections,
            jobsCreated: fixture.jobIds.count, jobCreationSeconds: fixture.creationSeconds, ports: servers.map(\.port),
            triggers: ThroughputFigure(measured, concurrency: options.concurrency), cpu: cpu,
            answered201: warmup.operations - warmup.failureCount + measured.operations - measured.failureCount,
            runsStored: stored.first.flatMap { Int($0) } ?? -1, serverExitStatuses: servers.map(\.exitStatus))
    }

    /// Warms every replica up on its share of the warm-up jobs (which opens the connections; a
    /// failure there stops the case), then sends the measured jobs, sampling the CPU around them.
    private static func drive(
        servers: [ServerProcess], fixture: PostgresJobFixture, options: BenchOptions, processes: PostgresProcesses?
    ) async throws -> (warmup: LoadRun, measured: LoadRun, cpu: CPU) {
        let perReplica = max(1, options.concurrency / servers.count)
        let generators = servers.map {
            SocketLoadGenerator(port: $0.port, authorization: "Bearer \(fixture.adminToken)", concurrency: perReplica)
        }
        defer { for generator in generators { generator.close() } }
        progress(
            "postgres: HTTP warming up on \(formatCount(options.warmup)) jobs, \(perReplica) connections per replica")
        let warmup = await sendConcurrently(
            generators, split(fixture.jobIds.prefix(options.warmup), into: generators.count))
        if warmup.failureCount > 0 {
            let examples = warmup.failureDetails.map { "\($0.key): \($0.value)" }.joined(separator: "\n  ")
            throw BenchFailure("\(warmup.failureCount) of \(warmup.operations) warm-up triggers failed:\n  \(examples)")
        }
        progress("postgres: HTTP triggering \(formatCount(options.jobs)) jobs on \(servers.count) replica(s)")
        let pids = servers.map(\.pid)
        let before = CPU.Point.take(servers: pids, postgres: processes)
        let measured = await sendConcurrently(
            generators, split(fixture.jobIds.dropFirst(options.warmup), into: generators.count))
        let after = CPU.Point.take(servers: pids, postgres: processes)
        return (warmup, measured, CPU(from: before, to: after, servers: pids))
    }

    /// Each generator sends its part at the same time; the result counts every operation and lasts
    /// as long as the slowest generator.
    private static func sendConcurrently(
        _ generators: [SocketLoadGenerator], _ parts: [ArraySlice<String>]
    ) async -> LoadRun {
        let path: @Sendable (String) -> String = { "/api/v1/jobs/\($0)/runs" }
        let runs = await withTaskGroup(of: LoadRun.self) { group in
            for (generator, part) in zip(generators, parts) {
                group.addTask { await generator.run(items: part, path: path) }
            }
            var runs: [LoadRun] = []
            for await run in group { runs.append(run) }
            return runs
        }
        var merged = LoadRun(
            operations: 0, elapsed: .zero, latencyNanoseconds: [], failures: [:], failureDetails: [:])
        for run in runs {
            merged.operations += run.operations
            merged.elapsed = max(merged.elapsed, run.elapsed)
            merged.latencyNanoseconds.append(contentsOf: run.latencyNanoseconds)
            merged.failures.merge(run.failures, uniquingKeysWith: +)
            merged.failureDetails.merge(run.failureDetails) { first, _ in first }
        }
        return merged
    }

    /// `items` in `parts` contiguous pieces of (nearly) equal size.
    private static func split(_ items: ArraySlice<String>, into parts: Int) -> [ArraySlice<String>] {
        (0..<parts).map { part in
            let start = items.startIndex + items.count * part / parts
            let end = items.startIndex + items.count * (part + 1) / parts
            return items[start..<end]
        }
    }

    // MARK: Report

    static func text(_ figures: Figures) -> String {
        var lines = [
            "PostgreSQL: triggers (raw pgbench, store, HTTP with 1 and 2 serve replicas), relay, aggregator (1 and 2 replicas, raw)"
        ]
        func add(_ label: String, _ value: String) { lines.append(reportLine(label, value)) }
        if let skipped = figures.skipped {
            add("skipped", skipped)
            return lines.joined(separator: "\n")
        }
        if let server = figures.server {
            add("server", "PostgreSQL \(server.version) at \(server.address)")
            add(
                "settings",
                "fsync=\(server.fsync), synchronous_commit=\(server.synchronousCommit),"
                    + " shared_buffers=\(server.sharedBuffers), max_connections=\(server.maxConnections)")
        }
        add(
            "jobs per case",
            "\(formatCount(figures.jobs)) measured + \(formatCount(figures.warmup)) warm-up, each triggered once;"
                + " \(figures.concurrency) in flight")
        let raw = figures.raw?.transactionsPerSecond
        if let figure = figures.raw {
            add("raw: pgbench, a trigger's rows per transaction", "\(formatRate(figure.transactionsPerSecond)) tps")
            add(
                "  how",
                "\(figure.clients) clients, \(figure.threads) threads, \(figure.seconds) s, -M prepared;"
                    + " payload \(figure.payloadBytes) bytes")
            add("  statement", figure.statement)
            if let latency = figure.latencyAverageMilliseconds {
                add("  latency ms", "average \(formatFixed(latency, 2))")
            }
            add(
                "  CPU (pgbench counted in other)",
                cpuText(figure.cpu, operations: figure.transactions ?? 0, serverName: nil))
        } else if let reason = figures.rawSkipped {
            add("raw: pgbench", "skipped: \(reason)")
        }
        if let store = figures.store {
            let rate = store.triggers.perSecond
            add(
                "store: PostgresStore.triggerRun, pool \(store.poolSize)",
                "\(formatRate(rate)) triggers/s" + (raw.map { " = \(formatPercent(rate / $0)) of raw" } ?? ""))
            add("  latency ms", percentiles(store.triggers))
            add("  CPU", cpuText(store.cpu, operations: store.triggers.operations, serverName: nil))
            add("  failures", failures(store.triggers))
        }
        if let relay = figures.relay {
            for (label, value) in relayText(relay) { add(label, value) }
        } else if let reason = figures.relaySkipped {
            add("relay: PostgreSQL → Kafka", "skipped: \(reason)")
        }
        let oneReplica = figures.http.first { $0.replicas == 1 }?.triggers.perSecond
        for http in figures.http {
            let rate = http.triggers.perSecond
            var value = "\(formatRate(rate)) triggers/s"
            if http.replicas == 1, let raw { value += " = \(formatPercent(rate / raw)) of raw" }
            if http.replicas > 1, let oneReplica { value += " = \(formatFixed(rate / oneReplica, 2))x one replica" }
            add("HTTP: \(http.replicas) serve replica(s), pool \(http.poolSizePerReplica) each", value)
            add("  latency ms", percentiles(http.triggers))
            add("  answers other than 201", failures(http.triggers))
            add(
                "  runs in the database afterwards",
                "\(formatCount(http.runsStored)) (\(formatCount(http.answered201)) answered 201)")
            add("  CPU", cpuText(http.cpu, operations: http.triggers.operations, serverName: "serve"))
        }
        if figures.http.isEmpty, let reason = figures.httpSkipped {
            add("HTTP: serve replicas and aggregators", "skipped: \(reason)")
        }
        if let goals = figures.goals {
            func verdict(_ met: Bool?, _ detail: String) -> String {
                guard let met else { return "not measured" }
                return (met ? "MET" : "NOT MET") + " (\(detail))"
            }
            let two = figures.http.first { $0.replicas == 2 }?.triggers.perSecond
            add(
                "goal: >= \(formatRate(goals.triggersPerSecond)) triggers/s with 1 replica",
                verdict(goals.oneReplicaRateMet, oneReplica.map { "\(formatRate($0))/s" } ?? ""))
            add(
                "goal: 1 replica >= \(formatPercent(goals.shareOfRaw)) of raw pgbench",
                verdict(
                    goals.oneReplicaShareOfRawMet,
                    oneReplica.flatMap { one in raw.map { formatPercent(one / $0) } } ?? ""))
            add(
                "goal: a 2nd replica adds throughput",
                verdict(
                    goals.secondReplicaAddsMet,
                    oneReplica.flatMap { one in two.map { "\(formatFixed($0 / one, 2))x" } } ?? ""))
        }
        for (label, value) in aggregatorText(figures.aggregator, raw: figures.rawUpdates) { add(label, value) }
        for failure in figures.failures { add("FAILED", failure) }
        return lines.joined(separator: "\n")
    }

    static func cpuText(_ cpu: CPU, operations: Int, serverName: String?) -> String {
        func part(_ name: String, _ seconds: Double) -> String {
            let perOperation = operations > 0 ? " (\(formatFixed(seconds * 1e6 / Double(operations), 0)) µs/op)" : ""
            return "\(name) \(formatFixed(seconds, 2)) s" + perOperation
        }
        var parts: [String] = []
        if let serverName, let seconds = cpu.serverSeconds { parts.append(part(serverName, seconds)) }
        parts.append(part("bench", cpu.benchSeconds))
        if let postgres = cpu.postgresSeconds { parts.append(part("postgres", postgres)) }
        parts.append("other \(formatFixed(cpu.otherSeconds, 2)) s")
        return parts.joined(separator: ", ") + "; machine \(formatPercent(cpu.machineBusyFraction)) busy"
    }

    private static func percentiles(_ figure: ThroughputFigure) -> String {
        let p = figure.latencyMilliseconds
        return "p50 \(formatFixed(p.p50, 2))   p90 \(formatFixed(p.p90, 2))   p99 \(formatFixed(p.p99, 2))"
            + "   max \(formatFixed(p.max, 2))"
    }

    private static func failures(_ figure: ThroughputFigure) -> String {
        guard !figure.failures.isEmpty else { return "0" }
        return figure.failures.sorted { $0.key < $1.key }.map { kind, count in
            "\(formatCount(count)) × \(kind) (e.g. \(figure.failureExamples[kind] ?? "?"))"
        }.joined(separator: "; ")
    }
}
