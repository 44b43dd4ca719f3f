import AgentJobsControlPlane
import AgentJobsEmbeddedLog
import AgentJobsLifecycle
import AgentJobsStore
import Foundation
import Logging
import ServiceLifecycle

/// Prunes the embedded message log of `agentjobs dev`: every `interval`, messages older than
/// `age` that every group has read are deleted (see ``SQLiteMessageLog/deleteMessages(olderThan:now:)``).
struct LogRetention: Service {
    let log: SQLiteMessageLog
    let age: Duration
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await repeatUntilShutdown(every: interval) {
            do {
                let deleted = try await log.deleteMessages(olderThan: age)
                if deleted > 0 { logger.info("pruned the embedded message log", metadata: ["messages": "\(deleted)"]) }
            } catch {
                logger.warning("could not prune the embedded message log", metadata: ["error": "\(error)"])
            }
        }
    }
}
