import AgentJobsTelemetry
import ArgumentParser
import Foundation

/// The exit statuses of every `agentjobs` command, for scripts to branch on (docs/configuration.md,
/// "Exit statuses").
enum ExitStatus {
    /// Any failure without a status of its own.
    static let failure: Int32 = 1
    /// The command line was not understood: an unknown option, a missing argument, a bad value.
    static let usage: Int32 = 2
    /// What the command names does not exist (HTTP 404 or 410).
    static let notFound: Int32 = 3
    /// The control plane refused because of the current state, e.g. the job has an active run (HTTP 409).
    static let conflict: Int32 = 4
    /// No token, an unknown or revoked one, or one without the scope the command needs (HTTP 401, 403).
    static let unauthorized: Int32 = 5
    /// The control plane could not be reached, or answered no HTTP.
    static let unreachable: Int32 = 6
    /// `--wait`: the run ended, but not `succeeded` (failed, timed out, canceled).
    static let runNotSucceeded: Int32 = 7
    /// `--wait --timeout`: the run had not ended in time (as `timeout(1)`); it goes on.
    static let waitTimedOut: Int32 = 124

    /// The status for an HTTP error status of the control plane's API.
    static func forHTTP(_ status: UInt) -> Int32 {
        switch status {
        case 401, 403: unauthorized
        case 404, 410: notFound
        case 409: conflict
        default: failure
        }
    }
}

extension AgentJobsCommand {
    /// Parses and runs the command, exiting with ``ExitStatus``: argument-parser's own status for a
    /// usage error (64, `EX_USAGE`) becomes 2, as for most command-line tools.
    static func main() async {
        do {
            LogFormat.bootstrap(try LogFormat.from(environment: ProcessInfo.processInfo.environment))
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            Foundation.exit(ExitStatus.usage)
        }
        switch ProcessInfo.processInfo.environment["AGENTJOBS_METRICS"]?.lowercased() {
        case nil, "", "on": MetricsExposition.bootstrap()
        case "off": break
        case let other?:
            FileHandle.standardError.write(
                Data("Error: AGENTJOBS_METRICS: '\(other)' is not on or off\n".utf8))
            Foundation.exit(ExitStatus.usage)
        }
        do {
            var command = try await asyncParseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("Error: \(error.message)\n".utf8))
            Foundation.exit(error.status)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(ExitStatus.usage)
            }
            exit(withError: error)
        }
    }
}
