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
        } catch let error as OrchestratorError {
            throw CLIError("\(settings.origin("AGENTJOBS_DATA_DIR")): \(error.message)")
        }
        let driverName = settings["AGENTJOBS_DRIVER"] ?? "process"
        guard let driverKind = AgentCatalog.DriverKind(rawValue: driverName) else {
            throw CLIError(
                "\(settings.origin("AGENTJOBS_DRIVER")): '\(driverName)' is not a driver; use docker or process")
        }
        let agentsDirectory = URL(fileURLWithPath: settings["AGENTJOBS_AGENTS_DIR"] ?? "deploy/agents")
            .standardizedFileURL
        let catalog = try loadCatalog(settings, agentsDirectory: agentsDirectory)
        let driver: any AgentDriver
        switch driverKind {
        case .process:
            let agentUser = settings["AGENTJOBS_PROCESS_USER"]
            if let agentUser {
                // The agent user reaches its run directory by name only (no listing of the data dir).
                for path in [directory.path, journal.runsDirectory.path] where chmod(path, 0o711) != 0 {
                    throw CLIError(
                        "\(settings.origin("AGENTJOBS_PROCESS_USER")): cannot make \(path) traversable for \(agentUser)"
                    )
                }
            }
            driver = ProcessDriver(
                configuration: ProcessDriverConfiguration(
                    stateDirectory: directory.appendingPathComponent("process-driver").path, agentUser: agentUser),
                logger: logger)
        case .docker:
            let docker = DockerDriver(
                configuration: DockerDriverConfiguration(
                    socketPath: settings["AGENTJOBS_DOCKER_SOCKET"] ?? "/var/run/docker.sock",
                    networkMode: settings["AGENTJOBS_DOCKER_NETWORK"] ?? "bridge",
                    memoryBytes: settings["AGENTJOBS_DOCKER_MEMORY_BYTES"].flatMap { Int64($0) },
                    cpus: settings["AGENTJOBS_DOCKER_CPUS"].flatMap { Double($0) }),
                hostId: identity.hostId, logger: logger)
            do {
                let version = try await docker.checkDaemon()
                logger.info("Docker engine reachable", metadata: ["api_version": "\(version)"])
            } catch {
                throw CLIError("\(settings.origin("AGENTJOBS_DOCKER_SOCKET")): \(error)")
            }
            driver = docker
        }
        var configuration = HostWorker<Consumer>.Configuration()
        configuration.stopGrace = try settings.seconds("AGENTJOBS_STOP_GRACE_SECONDS", default: 10)
        configuration.heartbeatInterval = try settings.seconds("AGENTJOBS_HEARTBEAT_SECONDS", default: 5)
        configuration.driverName = driverName
        let limit = try settings.integer("AGENTJOBS_MAX_CONCURRENT_RUNS", default: 0, in: 0...100_000)
        configuration.maxConcurrentRuns = limit > 0 ? limit : nil
        let retentionDays = try settings.integer("AGENTJOBS_HOST_RUN_RETENTION_DAYS", default: 30, in: 0...36_500)
        configuration.runRetention = retentionDays > 0 ? .seconds(retentionDays * 24 * 3600) : nil
        configuration.version = AgentJobsVersion.current
        do {
            return try HostWorker(
                identity: identity, consumer: consumer, producer: producer, driver: driver, journal: journal,
                makeLaunch: { dispatch, runDirectory in
                    try catalog.launch(
                        runId: dispatch.runId, jobId: dispatch.jobId, hostId: dispatch.hostId,
                        dispatchEpoch: dispatch.dispatchEpoch, agentType: dispatch.agentType,
                        parameters: dispatch.parameters,
                        logDirectory: runDirectory.path, driver: driverKind)
                },
                summarize: { dispatch, runDirectory, exitCode in
                    RunSummary.build(dispatch: dispatch, runDirectory: runDirectory, exitCode: exitCode)
                },
                configuration: configuration, logger: logger)
        } catch let error as OrchestratorError {
            throw CLIError(error.message)
        }
    }
}

/// The agent catalog: `AGENTJOBS_AGENT_CATALOG` (a JSON file, see docs/configuration.md) or the
/// sample agents in `AGENTJOBS_AGENTS_DIR`.
private func loadCatalog(_ settings: Settings, agentsDirectory: URL) throws -> AgentCatalog {
    guard let path = settings["AGENTJOBS_AGENT_CATALOG"] else {
        return AgentCatalog.sampleAgents(scriptsDirectory: agentsDirectory.path)
    }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CLIError("\(settings.origin("AGENTJOBS_AGENT_CATALOG")): cannot read \(path)")
    }
    do {
        return try JSONDecoder().decode(AgentCatalog.self, from: data)
    } catch {
        throw CLIError(
            "\(settings.origin("AGENTJOBS_AGENT_CATALOG")): \(path) is not an agent catalog: \(DecodingFailure.describe(error))"
        )
    }
}

enum AgentJobsVersion {
    static let current = "0.3.0"
}
