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

    static let usage = """
        usage: agentjobs-bench [--jobs N] [--warmup N] [--concurrency N] [--json PATH]
          --jobs N          jobs triggered in each measured phase, each once (default 30000)
          --warmup N        extra jobs triggered first and not counted (default 1000)
          --concurrency N   requests in flight at once (default 64)
          --json PATH       also write the report as JSON to PATH
          --scheduled-jobs N  scheduled jobs in the scheduler phase (default 100000)
        environment: AGENTJOBS_BIN  the agentjobs binary to start (default: next to this one)
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
            case "-h", "--help": throw UsageError(message: "")
            default: throw UsageError(message: "unknown option '\(argument)'")
            }
        }
        return options
    }
}
