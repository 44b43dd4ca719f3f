import AgentJobsCore
import AgentJobsOrchestrator
import ArgumentParser
import Foundation

/// `agentjobs host`: this machine's side of host registration (run on the host itself).
struct HostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host", abstract: "Register this host with a control plane, or re-sync its managed agents.",
        subcommands: [Register.self, Sync.self])

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Register this host and store its identity in the data dir, where `agentjobs orchestrate` finds it.")
        @Option(help: "Control plane URL, e.g. https://agentjobs.example.com.") var controlPlane: String
        @Option(
            help:
                "A one-time registration token (from POST /api/v1/registration-tokens); better from env AGENTJOBS_REGISTRATION_TOKEN or --token-file, as an argument is visible in ps."
        )
        var token: String?
        @Option(help: "A file holding the registration token.") var tokenFile: String?
        @Option(help: "The host's name.") var name: String
        @Option(help: "Comma-separated batch agent types this host runs, e.g. lineage-plus,datahealth.") var agents:
            String
        @Option(help: "The orchestrator's data dir (env AGENTJOBS_DATA_DIR; default .agentjobs-host).") var dataDir:
            String?
        @Option(name: [.short, .long], help: "table or json.") var output: OutputFormat = .table

        /// The registration token: `--token`, else `--token-file`, else `AGENTJOBS_REGISTRATION_TOKEN`.
        func registrationToken() throws -> String {
            if let token { return token }
            if let tokenFile {
                guard let data = FileManager.default.contents(atPath: tokenFile) else {
                    throw CLIError("--token-file: cannot read \(tokenFile)")
                }
                let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                guard !token.isEmpty else { throw CLIError("--token-file: \(tokenFile) is empty") }
                return token
            }
            if let token = ProcessInfo.processInfo.environment["AGENTJOBS_REGISTRATION_TOKEN"], !token.isEmpty {
                return token
            }
            throw CLIError(
                "no registration token: set AGENTJOBS_REGISTRATION_TOKEN or pass --token-file (create one with "
                    + "POST /api/v1/registration-tokens or in the console)", status: ExitStatus.usage)
        }

        func run() async throws {
            let agentTypes = try parseAgents(agents)
            let directory = hostDataDirectory(dataDir)
            let token = try registrationToken()
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent(HostIdentity.fileName).path) {
                throw CLIError(
                    "\(directory.path) already holds a host identity; use `agentjobs host sync` to change its agents, "
                        + "or remove \(HostIdentity.fileName) to register again")
            }
            let base = controlPlane.hasSuffix("/") ? String(controlPlane.dropLast()) : controlPlane
            let client = APIClient(baseURL: base, token: token)
            let json = try await client.send(
                .POST, "/api/v1/hosts/register",
                body: .object(["name": .string(name), "managedAgents": .array(agentTypes.map { .string($0.rawValue) })])
            )
            guard let hostId = json["host"]?["id"]?.stringValue, let credential = json["credential"]?.stringValue else {
                throw CLIError("the control plane's answer has no host id or credential")
            }
            guard let publicKey = json["signingPublicKey"]?.stringValue,
                (try? DispatchVerifier(base64: publicKey)) != nil
            else {
                throw CLIError(
                    "the control plane at \(base) did not return a dispatch-signing key; it must run `agentjobs serve` with Kafka configured"
                )
            }
            let identity = HostIdentity(
                controlPlaneURL: base, hostId: hostId, name: name, credential: credential, signingPublicKey: publicKey,
                managedAgents: agentTypes)
            do {
                try identity.save(to: directory)
            } catch let error as OrchestratorError {
                throw CLIError("registered as \(hostId) but " + error.message)
            }
            let file = directory.appendingPathComponent(HostIdentity.fileName).path
            try Output.result(
                output,
                json: JSONValue.object([
                    "hostId": .string(hostId), "name": .string(name), "identityFile": .string(file),
                    "managedAgents": .array(agentTypes.map { .string($0.rawValue) }),
                ]),
                text: "registered host \(hostId) (\(name)); identity saved to \(file)\n"
                    + "start the worker with: agentjobs orchestrate --data-dir \(directory.path)")
        }
    }

    struct Sync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Push a changed set of managed agent types to the control plane.")
        @Option(help: "Comma-separated batch agent types this host runs.") var agents: String
        @Option(help: "The orchestrator's data dir (env AGENTJOBS_DATA_DIR; default .agentjobs-host).") var dataDir:
            String?
        @Option(name: [.short, .long], help: "table or json.") var output: OutputFormat = .table

        func run() async throws {
            let agentTypes = try parseAgents(agents)
            let directory = hostDataDirectory(dataDir)
            var identity: HostIdentity
            do {
                identity = try HostIdentity.load(from: directory)
            } catch let error as OrchestratorError {
                throw CLIError(error.message)
            }
            let client = APIClient(baseURL: identity.controlPlaneURL, token: identity.credential)
            _ = try await client.send(
                .PUT, "/api/v1/hosts/\(identity.hostId.urlEncoded)/agents",
                body: .object(["managedAgents": .array(agentTypes.map { .string($0.rawValue) })]))
            identity.managedAgents = agentTypes
            try identity.save(to: directory)
            try Output.result(
                output,
                json: JSONValue.object([
                    "hostId": .string(identity.hostId),
                    "managedAgents": .array(agentTypes.map { .string($0.rawValue) }),
                ]),
                text: "host \(identity.hostId) now manages \(agentTypes.map(\.rawValue).joined(separator: ", "))")
        }
    }
}

func hostDataDirectory(_ option: String?) -> URL {
    URL(fileURLWithPath: option ?? ProcessInfo.processInfo.environment["AGENTJOBS_DATA_DIR"] ?? ".agentjobs-host")
        .standardizedFileURL
}

/// Parses `--agents`, refusing unknown and persistent types with the same messages as the API.
func parseAgents(_ text: String) throws -> [AgentType] {
    let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    do {
        return try AgentJobsCore.Host.validateManagedAgents(names)
    } catch let error as AgentJobsCore.ValidationError {
        throw CLIError("--agents: \(error.message)")
    }
}
