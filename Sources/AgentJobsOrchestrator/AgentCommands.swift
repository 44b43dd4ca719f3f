import AgentJobsCore
import Foundation

/// How each agent type is started: its command, and its parameters as the agent's own run options
/// (`lineage-plus` / `external-monitors`: `--connector-type X` per connector type and
/// `--connection-name N`; `datahealth`: `--file NAME`).
public struct AgentCommands: Sendable, Hashable {
    /// The executable per agent type (process driver).
    public var executables: [AgentType: String]

    public init(executables: [AgentType: String]) { self.executables = executables }

    /// Scripts named `<agent-type>.sh` in `directory` (the sample agents of deploy/agents).
    public static func scripts(in directory: URL) -> AgentCommands {
        var executables: [AgentType: String] = [:]
        for type in AgentType.allCases where type.kind == .batch {
            executables[type] = directory.appendingPathComponent("\(type.rawValue).sh").path
        }
        return AgentCommands(executables: executables)
    }

    /// The agent's arguments for its parameters.
    public static func arguments(for parameters: AgentParameters) -> [String] {
        switch parameters {
        case .connectors(let connectorTypes, let connectionName):
            return connectorTypes.flatMap { ["--connector-type", $0] }
                + (connectionName.map { ["--connection-name", $0] } ?? [])
        case .file(let fileName):
            return ["--file", fileName]
        }
    }

    /// The launch of a dispatched run.
    /// - Throws: ``DriverError`` when no command is configured for the agent type.
    public func launch(_ dispatch: RunDispatch, runDirectory: URL) throws -> AgentLaunch {
        guard let executable = executables[dispatch.agentType] else {
            throw DriverError("no command is configured for agent type \(dispatch.agentType.rawValue)")
        }
        return AgentLaunch(
            runId: dispatch.runId, executable: executable, arguments: Self.arguments(for: dispatch.parameters),
            environment: ["AGENTJOBS_JOB_ID": dispatch.jobId, "AGENTJOBS_AGENT_TYPE": dispatch.agentType.rawValue],
            logDirectory: runDirectory)
    }
}
