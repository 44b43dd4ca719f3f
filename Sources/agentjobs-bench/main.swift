import Foundation

// agentjobs-bench: see docs/benchmarks.md. Usage errors exit 2; lost or failed work exits 1.
// Timings are printed, never asserted.
let options: BenchOptions
do {
    options = try BenchOptions.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    if error.message.isEmpty {
        out(BenchOptions.usage)
        exit(0)
    }
    FileHandle.standardError.write(Data("agentjobs-bench: \(error.message)\n\(BenchOptions.usage)\n".utf8))
    exit(2)
}

/// Everything one run measured, for `--json`.
struct FullReport: Codable, Sendable {
    var date: String
    var machine: MachineInfo
    var phases: [BenchOptions.Phase]
    var kafkaBroker: String?
    var triggers: BenchReport?
    var telemetry: TelemetryBenchmark.Figures?
    var scheduler: SchedulerBenchmark.Figures?
    var relay: RelayBenchmark.Figures?
    var aggregator: AggregatorBenchmark.Figures?
    var e2e: EndToEndBenchmark.Figures?
    var launch: LaunchBenchmark.Figures?
    var recovery: RecoveryBenchmark.Figures?
    var postgres: PostgresBenchmark.Figures?
    var fleet: FleetBenchmark.Figures?
    var orchestrators: OrchestratorFleetBenchmark.Figures?
    var burst: BurstBenchmark.Figures?
}

/// Writes a line to stdout unbuffered, so a long run shows its figures as it goes.
func out(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// Prints a section of the report after an empty line.
func section(_ text: String) {
    out("\n" + text)
}

let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-bench-\(UUID().uuidString)")
do {
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let kafka = KafkaTarget.fromEnvironment()
    let phases = options.phases.sorted()
    let machine = await MachineInfo.collect(dataDirectory: scratch)
    var report = FullReport(
        date: ISO8601DateFormatter().string(from: Date()), machine: machine, phases: phases,
        kafkaBroker: kafka?.description)
    out("AgentJobs benchmarks (\(report.date)); phases: \(phases.map(\.rawValue).joined(separator: ","))")
    out(machine.text)
    out(reportLine("Kafka-protocol broker", kafka?.description ?? "none (\(KafkaTarget.skipReason))"))
    var failed = false

    if phases.contains(.triggers) {
        let triggers = try await Benchmark(options: options).run(machine: machine)
        section(triggers.text)
        report.triggers = triggers
        failed = failed || !triggers.isValid
    }
    if phases.contains(.telemetry) {
        let telemetry = try await TelemetryBenchmark.run(
            options: options, directory: scratch.appendingPathComponent("telemetry"), progress: progress)
        section(TelemetryBenchmark.text(telemetry))
        report.telemetry = telemetry
        failed = failed || !telemetry.failures.isEmpty
    }
    if phases.contains(.scheduler) {
        let scheduler = try await SchedulerBenchmark.run(
            directory: scratch.appendingPathComponent("scheduler"), jobs: options.scheduledJobs, progress: progress)
        section(SchedulerBenchmark.text(scheduler))
        report.scheduler = scheduler
    }
    if phases.contains(.relay) || phases.contains(.aggregator) {
        progress(
            "pipeline fixture: \(options.pipelineRuns) jobs on \(options.pipelineHosts) hosts, each triggered once")
        let fixture = try await PipelineFixture.prepare(
            directory: scratch.appendingPathComponent("pipeline-fixture"), hostCount: options.pipelineHosts,
            jobCount: options.pipelineRuns, trigger: true)
        progress("pipeline fixture ready in \(formatFixed(fixture.setupSeconds, 1)) s")
        if phases.contains(.relay) {
            let relay = try await RelayBenchmark.run(
                directory: scratch.appendingPathComponent("relay"), fixture: fixture, kafka: kafka, progress: progress)
            section(RelayBenchmark.text(relay))
            report.relay = relay
            failed = failed || !relay.failures.isEmpty
        }
        if phases.contains(.aggregator) {
            let aggregator = try await AggregatorBenchmark.run(
                directory: scratch.appendingPathComponent("aggregator"), fixture: fixture, kafka: kafka,
                progress: progress)
            section(AggregatorBenchmark.text(aggregator))
            report.aggregator = aggregator
            failed = failed || !aggregator.failures.isEmpty
        }
    }
    if phases.contains(.e2e) {
        let e2e = try await EndToEndBenchmark.run(
            directory: scratch.appendingPathComponent("e2e"), runs: options.e2eRuns, hosts: options.e2eHosts,
            rate: Double(options.e2eRate), kafka: kafka, progress: progress)
        section(EndToEndBenchmark.text(e2e))
        report.e2e = e2e
        failed = failed || !e2e.failures.isEmpty
    }
    if phases.contains(.launch) {
        let launch = try await LaunchBenchmark.run(
            directory: scratch.appendingPathComponent("launch"), agents: options.launchAgents, progress: progress)
        section(LaunchBenchmark.text(launch))
        report.launch = launch
        failed = failed || !launch.failures.isEmpty
    }
    if phases.contains(.recovery) {
        let recovery = try await RecoveryBenchmark.run(
            directory: scratch.appendingPathComponent("recovery"), kafka: kafka, progress: progress)
        section(RecoveryBenchmark.text(recovery))
        report.recovery = recovery
        failed = failed || !recovery.failures.isEmpty
    }
    if phases.contains(.postgres) {
        let postgres = await PostgresBenchmark.run(
            options: options, directory: scratch.appendingPathComponent("postgres"), kafka: kafka,
            progress: progress)
        section(PostgresBenchmark.text(postgres))
        report.postgres = postgres
        failed = failed || !postgres.failures.isEmpty
    }
    if phases.contains(.fleet) {
        let fleet = try await FleetBenchmark.run(
            directory: scratch.appendingPathComponent("fleet"), hostCounts: options.fleetHosts,
            seconds: options.fleetSeconds, progress: progress)
        section(FleetBenchmark.text(fleet))
        report.fleet = fleet
        failed = failed || !fleet.failures.isEmpty
    }
    if phases.contains(.orchestrators) {
        let orchestrators = try await OrchestratorFleetBenchmark.run(
            directory: scratch.appendingPathComponent("orchestrators"), kafka: kafka,
            orchestrators: options.fleetOrchestrators, progress: progress)
        section(OrchestratorFleetBenchmark.text(orchestrators))
        report.orchestrators = orchestrators
        failed = failed || !orchestrators.failures.isEmpty
    }
    if phases.contains(.burst) {
        let burst = try await BurstBenchmark.run(
            directory: scratch.appendingPathComponent("burst"), runs: options.burstRuns,
            concurrency: options.burstConcurrency, progress: progress)
        section(BurstBenchmark.text(burst))
        report.burst = burst
        failed = failed || !burst.failures.isEmpty
    }
    if let path = options.jsonPath {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: URL(fileURLWithPath: path))
        out("\nJSON report written to \(path)")
    }
    if failed { out("\nINVALID RUN: some work failed or was lost (see FAILED / INVALID lines above)") }
    try? FileManager.default.removeItem(at: scratch)
    exit(failed ? 1 : 0)
} catch {
    try? FileManager.default.removeItem(at: scratch)
    FileHandle.standardError.write(Data("agentjobs-bench: failed: \(error)\n".utf8))
    exit(1)
}
