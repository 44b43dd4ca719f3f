import AgentJobsCore
import Foundation

/// Everything one benchmark run measured, with the machine it ran on; printed as text and
/// optionally written as JSON.
struct BenchReport: Codable, Sendable {
    var benchmark = "agentjobs: run triggers/s through the live HTTP API on SQLite"
    var date: String
    var machine: MachineInfo
    var settings: Settings
    var rawSQLite: RawFigures
    var store: StoreFigures
    /// The headline HTTP figure (the first load generator).
    var http: HTTPFigures
    /// The same measurement with the other load generators, each on its own jobs and server.
    var otherHTTP: [HTTPFigures]
    var ratios: Ratios
    /// Triggers/s the server could do with every core to itself, from its CPU time per trigger: what
    /// a load generator costing nothing would at best reach. Derived, not measured.
    var serverCeiling: Double?
    /// The largest share of all cores that processes other than the server and the benchmark used
    /// during a measured phase (other users of a shared machine).
    var busiestOtherShare: Double?
    var goal: Goal

    struct Settings: Codable, Sendable {
        var jobs: Int
        var warmup: Int
        var concurrency: Int
        var loadGenerator: String
        var durability: String
        var serverBinary: String
    }

    struct RawFigures: Codable, Sendable {
        var onePerTransaction: RawSQLiteBaseline.Figure
        var batched: RawSQLiteBaseline.Figure
    }

    struct StoreFigures: Codable, Sendable {
        var jobsCreated: Int
        var jobCreationSeconds: Double
        var triggers: ThroughputFigure
        var cpu: CPUUsage
    }

    struct HTTPFigures: Codable, Sendable {
        /// ``BenchOptions/LoadGenerator`` raw value.
        var loadGenerator: String
        var jobsCreated: Int
        var jobCreationSeconds: Double
        var port: Int
        var triggers: ThroughputFigure
        var cpu: CPUUsage
        /// Runs in the database after the server stopped (warm-up included).
        var runsStored: Int
        var serverExitStatus: Int32?
    }

    /// HTTP triggers/s divided by each baseline's rate.
    struct Ratios: Codable, Sendable {
        var httpToStore: Double
        var httpToRawOnePerTransaction: Double
        var httpToRawBatched: Double
    }

    struct Goal: Codable, Sendable {
        var triggersPerSecond: Double
        var met: Bool
    }

    init(
        date: Date, machine: MachineInfo, settings: Settings, rawSQLite: RawFigures, store: StoreFigures,
        http: HTTPFigures, otherHTTP: [HTTPFigures], goalTriggersPerSecond: Double
    ) {
        self.date = ISO8601.format(date)
        self.machine = machine
        self.settings = settings
        self.rawSQLite = rawSQLite
        self.store = store
        self.http = http
        self.otherHTTP = otherHTTP
        let rate = http.triggers.perSecond
        ratios = Ratios(
            httpToStore: rate / store.triggers.perSecond,
            httpToRawOnePerTransaction: rate / rawSQLite.onePerTransaction.rowsPerSecond,
            httpToRawBatched: rate / rawSQLite.batched.rowsPerSecond)
        serverCeiling = http.cpu.serverSeconds.flatMap { seconds in
            seconds > 0 ? Double(machine.logicalCores) * Double(http.triggers.operations) / seconds : nil
        }
        busiestOtherShare = ([http.cpu, store.cpu] + otherHTTP.map(\.cpu)).compactMap { cpu -> Double? in
            let capacity = cpu.wallSeconds * Double(machine.logicalCores)
            return capacity > 0 ? cpu.otherSeconds / capacity : nil
        }.max()
        goal = Goal(
            triggersPerSecond: goalTriggersPerSecond,
            met: rate >= goalTriggersPerSecond && http.triggers.failures.isEmpty)
    }

    /// Whether the run is valid: every trigger answered 201 and every answered trigger is stored.
    var isValid: Bool {
        ([http] + otherHTTP).allSatisfy {
            $0.triggers.failures.isEmpty && $0.runsStored == settings.jobs + settings.warmup
        } && store.triggers.failures.isEmpty
    }

    /// The report as people read it.
    var text: String {
        var lines: [String] = []
        func add(_ line: String = "") { lines.append(line) }
        /// A label padded to one column, then its value.
        func add(_ label: String, _ value: String) {
            add("  " + label.padding(toLength: 50, withPad: " ", startingAt: 0) + value)
        }
        add("Run triggers through the live HTTP API on SQLite (\(date))")
        add()
        add("Settings")
        add("jobs per phase", "\(grouped(settings.jobs)) measured + \(grouped(settings.warmup)) warm-up")
        add("", "distinct jobs, each triggered once (one active run each)")
        add("in flight", "\(settings.concurrency)")
        add("durability", settings.durability)
        add("load generator", settings.loadGenerator)
        add("server", "\(settings.serverBinary) dev (port \(http.port))")
        add()

        add("Baselines, measured in this run")
        let single = rawSQLite.onePerTransaction
        let batched = rawSQLite.batched
        add(
            "raw SQLite, 1 INSERT per transaction",
            "\(rate(single.rowsPerSecond)) rows/s   (\(grouped(single.rows)) rows in \(fixed(single.seconds, 2)) s)")
        add(
            "raw SQLite, \(batched.rowsPerTransaction) INSERTs per transaction",
            "\(rate(batched.rowsPerSecond)) rows/s   (\(grouped(batched.rows)) rows in \(fixed(batched.seconds, 2)) s)")
        let storeRun = store.triggers
        add(
            "SQLiteStore.triggerRun, \(storeRun.concurrency) concurrent, no HTTP",
            "\(rate(storeRun.perSecond)) triggers/s")
        add("  latency ms", percentiles(storeRun))
        let storeCPU = store.cpu.loadGeneratorSeconds
        add(
            "  CPU of the bench process (store + callers)",
            "\(fixed(storeCPU, 2)) s = \(micros(storeCPU, storeRun.operations)) µs/trigger;"
                + " machine \(percent(store.cpu.machineBusyFraction)) busy")
        add("  failures", failures(storeRun))
        add()

        func addHTTP(_ http: HTTPFigures, headline: Bool) {
            add(
                "HTTP: POST /api/v1/jobs/{id}/runs, load generator \(http.loadGenerator)"
                    + (headline ? "" : " (not the headline)"))
            let run = http.triggers
            add(
                "throughput",
                "\(rate(run.perSecond)) triggers/s   (\(grouped(run.operations)) in \(fixed(run.seconds, 2)) s)")
            add("latency ms", percentiles(run))
            add("answers other than 201", failures(run))
            add(
                "runs in the database afterwards",
                "\(grouped(http.runsStored)) of \(grouped(settings.jobs + settings.warmup))")
            let serverCPU = http.cpu.serverSeconds ?? 0
            let generatorCPU = http.cpu.loadGeneratorSeconds
            add("CPU of the server", "\(fixed(serverCPU, 2)) s = \(micros(serverCPU, run.operations)) µs/trigger")
            add(
                "CPU of the load generator",
                "\(fixed(generatorCPU, 2)) s = \(micros(generatorCPU, run.operations)) µs/trigger")
            add(
                "CPU of other processes",
                "\(fixed(http.cpu.otherSeconds, 2)) s; machine \(percent(http.cpu.machineBusyFraction)) busy")
            if serverCPU > 0 {
                add(
                    "server ceiling (derived)",
                    "\(rate(Double(machine.logicalCores) * Double(run.operations) / serverCPU)) triggers/s"
                        + " = \(machine.logicalCores) cores / server CPU per trigger")
            }
            add()
        }
        addHTTP(http, headline: true)
        for other in otherHTTP { addHTTP(other, headline: false) }
        let run = http.triggers

        add("HTTP triggers/s compared with the baselines")
        add("÷ SQLiteStore.triggerRun", "\(fixed(ratios.httpToStore, 2))x")
        add("÷ raw SQLite, 1 INSERT per transaction", "\(fixed(ratios.httpToRawOnePerTransaction, 2))x")
        add(
            "÷ raw SQLite, \(batched.rowsPerTransaction) INSERTs per transaction",
            "\(fixed(ratios.httpToRawBatched, 3))x")
        add()
        let verdict = goal.met ? "MET" : "NOT MET"
        let share = percent(run.perSecond / goal.triggersPerSecond)
        add(
            "Goal >= \(rate(goal.triggersPerSecond)) triggers/s over HTTP on this machine: \(verdict)"
                + " (\(rate(run.perSecond))/s is \(share) of it)")
        if !isValid { add("INVALID RUN: some triggers failed or were not stored (see above)") }
        if let busiestOtherShare, busiestOtherShare > 0.1 {
            add(
                "WARNING: other processes used \(percent(busiestOtherShare)) of the machine's CPU during a measured"
                    + " phase; the rates are lower than on a quiet machine.")
        }
        return lines.joined(separator: "\n")
    }

    private func percentiles(_ figure: ThroughputFigure) -> String {
        let p = figure.latencyMilliseconds
        return "p50 \(fixed(p.p50, 2))   p90 \(fixed(p.p90, 2))   p99 \(fixed(p.p99, 2))   max \(fixed(p.max, 2))"
    }

    private func failures(_ figure: ThroughputFigure) -> String {
        guard !figure.failures.isEmpty else { return "0" }
        return figure.failures.sorted { $0.key < $1.key }.map { kind, count in
            "\(grouped(count)) × \(kind) (e.g. \(figure.failureExamples[kind] ?? "?"))"
        }.joined(separator: "; ")
    }
}

private func fixed(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
private func percent(_ fraction: Double) -> String { String(format: "%.0f%%", fraction * 100) }
private func micros(_ seconds: Double, _ count: Int) -> String {
    count > 0 ? fixed(seconds * 1e6 / Double(count), 0) : "-"
}
private func rate(_ value: Double) -> String { grouped(Int(value.rounded())) }

/// `12345` as `12,345`.
private func grouped(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var result = ""
    for (offset, digit) in digits.enumerated() {
        if offset > 0, (digits.count - offset) % 3 == 0 { result.append(",") }
        result.append(digit)
    }
    return (value < 0 ? "-" : "") + result
}
