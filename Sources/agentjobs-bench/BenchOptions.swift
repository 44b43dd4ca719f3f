import Foundation

/// The benchmark's settings, parsed by hand from the command line (this target has no
/// argument-parser dependency).
struct BenchOptions: Sendable {
    /// Jobs triggered in each measured phase (store-level and HTTP), each exactly once.
    var jobs = 30_000
    /// Extra jobs triggered first in each phase and left out of the figures.
    var warmup = 1_000
    /// Requests (or store calls) in flight at once.
    var concurrency = 64
    /// Scheduled jobs in the scheduler phase (a tenth share one hot minute).
    var scheduledJobs = 100_000
    /// Where to write the report as JSON, if anywhere.
    var jsonPath: String?
    /// The phases to run, in the order of ``Phase``.
    var phases: Set<Phase> = Set(Phase.allCases)
    /// Outbox rows relayed, and runs whose events the aggregator applies (two events each).
    var pipelineRuns = 50_000
    /// Hosts the pipeline fixture's jobs are spread over (dispatch keys, event-signing keys).
    var pipelineHosts = 100
    /// End to end: runs, hosts and triggers per second.
    var e2eRuns = 1_000
    var e2eHosts = 100
    var e2eRate = 100
    /// Agents started in the launch phase.
    var launchAgents = 500
    /// Fleet sizes of the fleet phase, and how long each is measured in steady state.
    var fleetHosts = [1_000, 5_000, 20_000]
    var fleetSeconds = 30
    /// Real `agentjobs orchestrate` processes of the orchestrators phase.
    var fleetOrchestrators = 50
    /// The burst phase: runs, and triggers in flight.
    var burstRuns = 2_000
    var burstConcurrency = 16
    /// The HTTP load generators of the triggers phase, in order; the first gives the headline figure.
    var loadGenerators: [LoadGenerator] = [.socket, .asyncHTTPClient]

    /// A way of sending the HTTP triggers.
    enum LoadGenerator: String, CaseIterable, Codable, Sendable {
        /// ``SocketLoadGenerator``: blocking keep-alive sockets, one thread per connection.
        case socket
        /// AsyncHTTPClient with a keep-alive pool (what the benchmark used first).
        case asyncHTTPClient = "asynchttpclient"

        var description: String {
            switch self {
            case .socket:
                return "minimal HTTP/1.1 keep-alive client on blocking sockets (one thread per connection)"
                    + " inside the agentjobs-bench process, on the same machine as the server (both share its cores)"
            case .asyncHTTPClient:
                return "AsyncHTTPClient inside the agentjobs-bench process, on the same machine as the server"
                    + " (both share its cores)"
            }
        }
    }

    /// The benchmark's phases; `--only` selects some.
    enum Phase: String, CaseIterable, Codable, Sendable, Comparable {
        case triggers, telemetry, scheduler, relay, aggregator, e2e, launch, recovery, postgres, fleet, orchestrators,
            burst

        static func < (lhs: Phase, rhs: Phase) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }
    }

    static let usage = """
        usage: agentjobs-bench [--only PHASES] [options]
          --only LIST         comma-separated phases to run (default all, in this order):
                              triggers,telemetry,scheduler,relay,aggregator,e2e,launch,recovery,postgres,
                              fleet,orchestrators,burst
          --json PATH         also write the report as JSON to PATH
        triggers, telemetry, postgres:
          --jobs N            jobs triggered in each measured phase, each once (default 30000)
          --warmup N          extra jobs triggered first and not counted (default 1000)
          --concurrency N     requests in flight at once (default 64; postgres: also pgbench's
                              clients, at most the server's max_connections - 20)
          --load-generators LIST  HTTP clients, each on its own jobs and server, the first one
                              the headline: socket,asynchttpclient (default both, in this order)
        scheduler:
          --scheduled-jobs N  scheduled jobs (default 100000)
        relay, aggregator:
          --pipeline-runs N   outbox rows relayed; runs whose 2 events are applied (default 50000)
          --pipeline-hosts N  hosts those runs are spread over (default 100)
        e2e:
          --e2e-runs N        runs, each triggered once (default 1000)
          --e2e-hosts N       in-process hosts, each a HostWorker (default 100)
          --e2e-rate N        triggers per second (default 100)
        launch:
          --launch-agents N   agents started at each level (default 500)
        recovery:
          (no options) aggregator kill -9 and orchestrator SIGTERM with 20 runs, 3 times each,
          with separate agentjobs processes on the Kafka broker
        postgres:
          (uses --jobs, --warmup, --concurrency) on a PostgreSQL server, a fresh database per case:
          raw pgbench writing a trigger's rows; PostgresStore.triggerRun in-process (pool 20); HTTP
          through 1 and 2 agentjobs serve replicas (these need the Kafka broker too)
        fleet:
          --fleet-hosts LIST  fleet sizes, each measured in turn (default 1000,5000,20000)
          --fleet-seconds N   steady-state seconds measured per size (default 30; then 1% of the
                              hosts stop and the phase waits up to the 30 s grace + 30 s)
        orchestrators (needs the Kafka broker):
          --fleet-orchestrators N  real agentjobs orchestrate processes, a host each (default 50)
        burst:
          --burst-runs N      jobs created through the API and each triggered once against
                              agentjobs dev, with a no-op agent (default 2000)
          --burst-concurrency N  triggers in flight (default 16); measured with the host's
                              concurrency limit at 8, then without one
        environment:
          AGENTJOBS_BIN                  the agentjobs binary to start (default: next to this one)
          AGENTJOBS_BENCH_KAFKA_BROKERS  host:port of a Kafka-protocol broker for the Kafka cases
                                         (without it they are skipped; make bench starts Tansu)
          AGENTJOBS_BENCH_KAFKA_CONSUMER_PROPERTIES  name=value,… added to the benchmark's Kafka consumers
          AGENTJOBS_BENCH_DOCKER_SOCKET  Docker socket for the launch phase's Docker case
          AGENTJOBS_BENCH_POSTGRES_URL   postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=… of a PostgreSQL
                                         server (a user that may CREATE DATABASE) for the postgres
                                         phase (without it the phase is skipped; make bench starts a
                                         throw-away one when PostgreSQL is installed)
        """

    /// A command line the benchmark cannot run with; `message` says what to fix.
    struct UsageError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// Parses `--name value` and `--name=value` options.
    /// - Throws: ``UsageError`` for an unknown option, a missing value or a value out of range;
    ///   `--help` throws one with an empty message.
    static func parse(_ arguments: [String]) throws(UsageError) -> BenchOptions {
        var options = BenchOptions()
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            var name = argument
            var inlineValue: String?
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            func value() throws(UsageError) -> String {
                if let inlineValue { return inlineValue }
                guard let next = remaining.popFirst() else { throw UsageError(message: "\(name) needs a value") }
                return next
            }
            func count(in range: ClosedRange<Int>) throws(UsageError) -> Int {
                let text = try value()
                guard let number = Int(text.replacingOccurrences(of: "_", with: "")), range.contains(number) else {
                    throw UsageError(
                        message: "\(name): '\(text)' is not a whole number in \(range.lowerBound)...\(range.upperBound)"
                    )
                }
                return number
            }
            switch name {
            case "--jobs": options.jobs = try count(in: 1...10_000_000)
            case "--warmup": options.warmup = try count(in: 0...1_000_000)
            case "--concurrency": options.concurrency = try count(in: 1...4096)
            case "--json": options.jsonPath = try value()
            case "--scheduled-jobs": options.scheduledJobs = try count(in: 1...10_000_000)
            case "--pipeline-runs": options.pipelineRuns = try count(in: 1...10_000_000)
            case "--pipeline-hosts": options.pipelineHosts = try count(in: 1...10_000)
            case "--e2e-runs": options.e2eRuns = try count(in: 1...1_000_000)
            case "--e2e-hosts": options.e2eHosts = try count(in: 1...1_000)
            case "--e2e-rate": options.e2eRate = try count(in: 1...100_000)
            case "--launch-agents": options.launchAgents = try count(in: 1...100_000)
            case "--fleet-seconds": options.fleetSeconds = try count(in: 1...86_400)
            case "--fleet-orchestrators": options.fleetOrchestrators = try count(in: 1...1_000)
            case "--burst-runs": options.burstRuns = try count(in: 1...100_000)
            case "--burst-concurrency": options.burstConcurrency = try count(in: 1...1_024)
            case "--fleet-hosts":
                let text = try value()
                let sizes = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) >= 100 && ($0 ?? 0) <= 1_000_000 }) else {
                    throw UsageError(message: "--fleet-hosts: '\(text)' is not a list of sizes in 100...1000000")
                }
                options.fleetHosts = sizes.compactMap { $0 }
            case "--only":
                let text = try value()
                var phases: Set<Phase> = []
                for name in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                    guard let phase = Phase(rawValue: name) else {
                        let known = Phase.allCases.map(\.rawValue).joined(separator: ",")
                        throw UsageError(message: "--only: unknown phase '\(name)'; phases are \(known)")
                    }
                    phases.insert(phase)
                }
                guard !phases.isEmpty else { throw UsageError(message: "--only needs at least one phase") }
                options.phases = phases
            case "--load-generators":
                let text = try value()
                var generators: [LoadGenerator] = []
                for name in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                    guard let generator = LoadGenerator(rawValue: name) else {
                        let known = LoadGenerator.allCases.map(\.rawValue).joined(separator: ",")
                        throw UsageError(message: "--load-generators: unknown '\(name)'; known: \(known)")
                    }
                    if !generators.contains(generator) { generators.append(generator) }
                }
                guard !generators.isEmpty else { throw UsageError(message: "--load-generators needs at least one") }
                options.loadGenerators = generators
            case "-h", "--help": throw UsageError(message: "")
            default: throw UsageError(message: "unknown option '\(argument)'")
            }
        }
        return options
    }
}
