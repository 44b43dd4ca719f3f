import AgentJobsCore
import AgentJobsOrchestrator
import Foundation
import Logging

/// Assembles a host's orchestrator from settings (shared by `orchestrate` and `dev`).
enum HostRuntime {
    static func makeWorker<Consumer: MessageConsumer>(
        identity: HostIdentity, directory: URL, settings: Settings, consumer: Consumer, producer: any MessageProducer,
        logger: Logger
    ) async throws -> HostWorker<Consumer> {
        let journal: RunJournal
        do {
            journal = try RunJournal(dataDirectory: directory)
        } catch let error as OrchestratorSetupError {
            throw CLIError("\(settings.origin("AGENTJOBS_DATA_DIR")): \(error.message)")
        }
        let driverName = settings["AGENTJOBS_DRIVER"] ?? "process"
        guard driverName == "process" else {
            throw CLIError("\(settings.origin("AGENTJOBS_DRIVER")): '\(driverName)' is not a driver; use process")
        }
        let driver = ProcessDriver(runsDirectory: journal.runsDirectory)
        let agentsDirectory = URL(fileURLWithPath: settings["AGENTJOBS_AGENTS_DIR"] ?? "deploy/agents")
            .standardizedFileURL
        let commands = AgentCommands.scripts(in: agentsDirectory)
        var configuration = HostWorker<Consumer>.Configuration()
        configuration.stopGrace = try settings.seconds("AGENTJOBS_STOP_GRACE_SECONDS", default: 10)
        configuration.heartbeatInterval = try settings.seconds("AGENTJOBS_HEARTBEAT_SECONDS", default: 5)
        configuration.driverName = driverName
        configuration.version = AgentJobsVersion.current
        do {
            return try HostWorker(
                identity: identity, consumer: consumer, producer: producer, driver: driver, journal: journal,
                makeLaunch: { dispatch, runDirectory in try commands.launch(dispatch, runDirectory: runDirectory) },
                summarize: { dispatch, runDirectory, exitCode in
                    RunSummary.build(dispatch: dispatch, runDirectory: runDirectory, exitCode: exitCode)
                },
                configuration: configuration, logger: logger)
        } catch let error as OrchestratorSetupError {
            throw CLIError(error.message)
        }
    }
}

enum AgentJobsVersion {
    static let current = "0.3.0"
}
