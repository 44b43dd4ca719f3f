import AgentJobsCore

/// How each batch agent type is run on this host: its image (docker driver) or command (process
/// driver), and how a run's parameters become the agent's command-line arguments.
///
/// The defaults mirror the agents' own run options:
/// - `lineage-plus`, `external-monitors`: `--connector-type T` once per connector type, then
///   `--connection-name N` when a connection is named;
/// - `datahealth`: `--file NAME`.
///
/// A configuration file may override any field; fields it leaves out keep their defaults.
public struct AgentCatalog: Sendable, Hashable, Codable {
    /// How one agent type is run.
    public struct Program: Sendable, Hashable, Codable {
        /// The Docker image reference (docker driver).
        public var image: String
        /// Arguments put before the parameter arguments in the container's command (after the image's
        /// entrypoint), e.g. the agent type for an image that holds several agents.
        public var imageArguments: [String]
        /// The executable and its leading arguments (process driver); an executable without a slash
        /// is looked up in `PATH`.
        public var command: [String]
        /// The option that introduces one connector type (`lineage-plus`, `external-monitors`).
        public var connectorTypeOption: String
        /// The option that introduces the connection name (`lineage-plus`, `external-monitors`).
        public var connectionNameOption: String
        /// The option that introduces the file name (`datahealth`).
        public var fileOption: String

        /// Creates a program description; the options default to the agents' own.
        public init(
            image: String, imageArguments: [String] = [], command: [String],
            connectorTypeOption: String = "--connector-type", connectionNameOption: String = "--connection-name",
            fileOption: String = "--file"
        ) {
            self.image = image
            self.imageArguments = imageArguments
            self.command = command
            self.connectorTypeOption = connectorTypeOption
            self.connectionNameOption = connectionNameOption
            self.fileOption = fileOption
        }

        /// The default for an agent type: image `agentjobs/<type>:latest`, command `<type>` from `PATH`.
        public static func standard(_ type: AgentType) -> Program {
            Program(image: "agentjobs/\(type.rawValue):latest", command: [type.rawValue])
        }

        /// The agent's arguments for a run's parameters.
        public func arguments(for parameters: AgentParameters) -> [String] {
            switch parameters {
            case .connectors(let connectorTypes, let connectionName):
                var arguments: [String] = []
                for type in connectorTypes { arguments += [connectorTypeOption, type] }
                if let connectionName { arguments += [connectionNameOption, connectionName] }
                return arguments
            case .file(let fileName):
                return [fileOption, fileName]
            }
        }

        private enum CodingKeys: String, CodingKey {
            case image, imageArguments, command, connectorTypeOption, connectionNameOption, fileOption
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Program(image: "", command: [])
            image = try container.decode(String.self, forKey: .image)
            imageArguments = try container.decodeIfPresent([String].self, forKey: .imageArguments) ?? []
            command = try container.decode([String].self, forKey: .command)
            connectorTypeOption =
                try container.decodeIfPresent(String.self, forKey: .connectorTypeOption) ?? defaults.connectorTypeOption
            connectionNameOption =
                try container.decodeIfPresent(String.self, forKey: .connectionNameOption)
                ?? defaults.connectionNameOption
            fileOption = try container.decodeIfPresent(String.self, forKey: .fileOption) ?? defaults.fileOption
        }
    }

    public var lineagePlus: Program
    public var externalMonitors: Program
    public var datahealth: Program

    /// Creates a catalog; every agent type defaults to ``Program/standard(_:)``.
    public init(
        lineagePlus: Program = .standard(.lineagePlus), externalMonitors: Program = .standard(.externalMonitors),
        datahealth: Program = .standard(.datahealth)
    ) {
        self.lineagePlus = lineagePlus
        self.externalMonitors = externalMonitors
        self.datahealth = datahealth
    }

    /// The sample agents of `deploy/agents/`: one image for all types (the type is its first
    /// argument), and for the process driver the shell scripts run with `shell`.
    /// - Parameters:
    ///   - scriptsDirectory: Where the scripts are (`deploy/agents` in a checkout).
    ///   - image: The image `deploy/agents/build-image.sh` built.
    ///   - shell: The shell that runs the scripts.
    public static func sampleAgents(
        scriptsDirectory: String, image: String = "agentjobs/sample-agent:dev", shell: String = "/bin/sh"
    ) -> AgentCatalog {
        func program(_ type: AgentType) -> Program {
            Program(
                image: image, imageArguments: [type.rawValue],
                command: [shell, "\(scriptsDirectory)/\(type.rawValue).sh"])
        }
        return AgentCatalog(
            lineagePlus: program(.lineagePlus), externalMonitors: program(.externalMonitors),
            datahealth: program(.datahealth))
    }

    /// The program of a batch agent type.
    /// - Throws: ``OrchestratorError`` with ``OrchestratorError/Code-swift.struct/agentNotConfigured``
    ///   for a persistent agent type (those are not run as jobs).
    public func program(for type: AgentType) throws -> Program {
        switch type {
        case .lineagePlus: return lineagePlus
        case .externalMonitors: return externalMonitors
        case .datahealth: return datahealth
        case .dataSource, .sds, .crossSource:
            throw OrchestratorError(
                code: .agentNotConfigured,
                message: "'\(type.rawValue)' is a persistent agent type; only batch agents are run as jobs")
        }
    }

    /// Which driver a launch is for: it decides whether the program is an image or a command.
    public enum DriverKind: String, Sendable, Hashable, Codable {
        case docker
        case process
    }

    /// The launch description of a run.
    /// - Throws: ``OrchestratorError`` with ``OrchestratorError/Code-swift.struct/agentNotConfigured``
    ///   for a persistent agent type, parameters that do not fit the type, or an empty command.
    public func launch(
        runId: String, jobId: String, hostId: String, dispatchEpoch: Int, agentType: AgentType,
        parameters: AgentParameters, logDirectory: String, environment: [String: String] = [:], driver: DriverKind
    ) throws -> AgentLaunch {
        let program = try program(for: agentType)
        guard parameters.fits(agentType) else {
            throw OrchestratorError(
                code: .agentNotConfigured, message: "the run's parameters do not fit agent type '\(agentType.rawValue)'"
            )
        }
        let executable: String
        let leading: [String]
        switch driver {
        case .docker:
            executable = program.image
            leading = program.imageArguments
        case .process:
            guard let first = program.command.first, !first.isEmpty else {
                throw OrchestratorError(
                    code: .agentNotConfigured,
                    message: "no command is configured for agent type '\(agentType.rawValue)'")
            }
            executable = first
            leading = Array(program.command.dropFirst())
        }
        return AgentLaunch(
            runId: runId, jobId: jobId, hostId: hostId, dispatchEpoch: dispatchEpoch, agentType: agentType,
            program: executable, arguments: leading + program.arguments(for: parameters), environment: environment,
            logDirectory: logDirectory)
    }

    private enum CodingKeys: String, CodingKey {
        case lineagePlus = "lineage-plus"
        case externalMonitors = "external-monitors"
        case datahealth
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            lineagePlus: try container.decodeIfPresent(Program.self, forKey: .lineagePlus) ?? .standard(.lineagePlus),
            externalMonitors: try container.decodeIfPresent(Program.self, forKey: .externalMonitors)
                ?? .standard(.externalMonitors),
            datahealth: try container.decodeIfPresent(Program.self, forKey: .datahealth) ?? .standard(.datahealth))
    }
}
