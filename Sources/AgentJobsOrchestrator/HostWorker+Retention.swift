import AgentJobsCore
import AgentJobsLifecycle
import Foundation
import Logging

// MARK: Retention of run directories

extension HostWorker {
    /// Every ``Configuration/retentionInterval`` (the first at start-up), removes what this host
    /// keeps of runs that ended more than ``Configuration/runRetention`` ago; nothing when that is nil.
    func retentionLoop() async {
        guard let age = configuration.runRetention else { return }
        await repeatUntilShutdown(every: configuration.retentionInterval) {
            _ = await pruneRuns(endedBefore: clock().addingTimeInterval(-age.seconds))
        }
    }

    /// Removes the directory (logs and agent files) and then the journal record of every run
    /// ``RunJournal/prunable(before:)`` names, unless the driver still holds its agent (a release
    /// that failed). A run whose directory cannot be removed keeps its record, and is tried again at
    /// the next pass.
    /// - Returns: How many runs were removed.
    func pruneRuns(endedBefore cutoff: Date) async -> Int {
        let held: Set<String>
        do {
            // Not list(): it settles half-made launches, and launches are under way meanwhile.
            held = try await driver.heldRunIds()
        } catch {
            logger.warning(
                "could not list the driver's agents; not removing ended runs' files this time",
                metadata: ["error": "\(error)"])
            return 0
        }
        var removed = 0
        var failures: [String: String] = [:]
        for runId in await journal.prunable(before: cutoff) where !held.contains(runId) {
            guard !Task.isCancelled, !Task.isShuttingDownGracefully else { break }
            do {
                try await Self.removeOffPool(journal.directory(of: runId).path)
                try await journal.forget(runId)
                removed += 1
            } catch {
                failures[runId] = "\(error)"
            }
        }
        if removed > 0 { logger.info("removed the files of ended runs", metadata: ["runs": "\(removed)"]) }
        if let (runId, error) = failures.min(by: { $0.key < $1.key }) {
            logger.warning(
                "could not remove the files of ended runs; trying again at the next pass",
                metadata: ["runs": "\(failures.count)", "first_run_id": "\(runId)", "error": "\(error)"])
        }
        return removed
    }

    /// ``RunDirectoryFiles/removeTree(_:maxDepth:)`` on a thread of its own: a directory of many
    /// files would hold a thread of the cooperative pool in system calls.
    static func removeOffPool(_ path: String) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            removalQueue.async { continuation.resume(with: Result { try RunDirectoryFiles.removeTree(path) }) }
        }
    }
}

/// Where run directories are removed (one at a time, off the cooperative pool).
private let removalQueue = DispatchQueue(label: "agentjobs.run-retention")
