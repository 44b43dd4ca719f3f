import Foundation

// agentjobs-bench: see docs/benchmarks.md. Usage errors exit 2, failed or invalid runs exit 1.
let options: BenchOptions
do {
    options = try BenchOptions.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    if error.message.isEmpty {
        print(BenchOptions.usage)
        exit(0)
    }
    FileHandle.standardError.write(Data("agentjobs-bench: \(error.message)\n\(BenchOptions.usage)\n".utf8))
    exit(2)
}

do {
    let report = try await Benchmark(options: options).run()
    print(report.text)
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("agentjobs-bench-scheduler-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: scratch) }
    let scheduler = try await SchedulerBenchmark.run(directory: scratch, jobs: options.scheduledJobs, progress: progress)
    print("")
    print(SchedulerBenchmark.text(scheduler))
    if let path = options.jsonPath {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: URL(fileURLWithPath: path))
        print("\nJSON report written to \(path)")
    }
    exit(report.isValid ? 0 : 1)
} catch {
    FileHandle.standardError.write(Data("agentjobs-bench: failed: \(error)\n".utf8))
    exit(1)
}
