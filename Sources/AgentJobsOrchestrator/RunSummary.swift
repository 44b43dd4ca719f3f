import AgentJobsCore
import Foundation

/// Builds the error summary of a run that did not succeed, from the files the run left in its
/// directory on the host (ARCHITECTURE.md, "Error summary"):
/// - `lineage-plus` with failed connections: each connection's log (`<connection>.log`, written by
///   the agent into its log directory) that has error lines, with its top deduplicated error lines
///   and the log's path on the host;
/// - otherwise the agent's own last error line (from stderr), else the last lines of its output.
public enum RunSummary {
    /// Files of the run directory that are not connection logs.
    static let outputFiles: Set<String> = ["stdout.log", "stderr.log"]

    public static func build(dispatch: RunDispatch, runDirectory: URL, exitCode: Int32?) -> String {
        if dispatch.agentType == .lineagePlus, let summary = failedConnections(in: runDirectory) { return summary }
        let stderr = tail(of: runDirectory.appendingPathComponent("stderr.log"))
        let stdout = tail(of: runDirectory.appendingPathComponent("stdout.log"))
        let message =
            stderr.last(where: ErrorSummary.isErrorLine)
            ?? stderr.last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty })
        let exit = exitCode.map { "The agent exited with code \($0).\n" } ?? ""
        return exit
            + ErrorSummary.forAgentFailure(
                agentMessage: message, lastOutputLines: Array((stdout + stderr).suffix(10)),
                logPath: runDirectory.appendingPathComponent(stderr.isEmpty ? "stdout.log" : "stderr.log").path)
    }

    /// At most this many connection logs are read (an agent could create millions of files).
    static let maxConnectionLogs = 256

    /// The per-connection summary, or `nil` when no connection log has error lines.
    static func failedConnections(in directory: URL) -> String? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return nil }
        let logs = names.filter { $0.hasSuffix(".log") && !outputFiles.contains($0) }.sorted().prefix(
            maxConnectionLogs)
        var failed: [ErrorSummary.FailedConnection] = []
        for name in logs {
            let path = directory.appendingPathComponent(name)
            let lines = tail(of: path, maxBytes: 1 << 20)
            guard lines.contains(where: ErrorSummary.isErrorLine) else { continue }
            failed.append(.init(name: String(name.dropLast(".log".count)), logLines: lines, logPath: path.path))
        }
        return failed.isEmpty ? nil : ErrorSummary.forFailedConnections(failed, totalConnections: logs.count)
    }

    /// The lines of the last `maxBytes` of a file; empty when it does not exist or is not a plain
    /// file (the agent may have planted a link to a secret there: ``RunDirectoryFiles``).
    static func tail(of url: URL, maxBytes: Int = 64 << 10) -> [String] {
        guard let (bytes, truncated) = RunDirectoryFiles.tail(url.path, maxBytes: maxBytes) else { return [] }
        var lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true).map(
            String.init)
        if truncated, !lines.isEmpty { lines.removeFirst() }  // a partial first line
        return lines
    }
}
