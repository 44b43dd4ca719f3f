import AgentJobsCore
import Foundation

/// Who this host is to the control plane: written by `agentjobs host register` into the
/// orchestrator's data dir (`host.json`, mode 0600) and read by `agentjobs orchestrate`.
public struct HostIdentity: Sendable, Hashable, Codable {
    public var controlPlaneURL: String
    public var hostId: String
    public var name: String
    /// The host credential (`ajh_…`); secret.
    public var credential: String
    /// The control plane's dispatch-signing public key (base64 Ed25519).
    public var signingPublicKey: String
    public var managedAgents: [AgentType]

    public init(
        controlPlaneURL: String, hostId: String, name: String, credential: String, signingPublicKey: String,
        managedAgents: [AgentType]
    ) {
        self.controlPlaneURL = controlPlaneURL
        self.hostId = hostId
        self.name = name
        self.credential = credential
        self.signingPublicKey = signingPublicKey
        self.managedAgents = managedAgents
    }

    /// The file name inside the data dir.
    public static let fileName = "host.json"

    /// Reads the identity from `directory`.
    /// - Throws: ``OrchestratorError`` saying how to register when the file is missing or unreadable.
    public static func load(from directory: URL) throws -> HostIdentity {
        let url = directory.appendingPathComponent(fileName)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw OrchestratorError(
                code: .hostNotSetUp,
                message: "no host identity at \(url.path); register this host first with "
                    + "`agentjobs host register --control-plane URL --token REG --name NAME --agents TYPES --data-dir \(directory.path)`"
            )
        }
        do {
            return try JSONDecoder().decode(HostIdentity.self, from: data)
        } catch {
            throw OrchestratorError(
                code: .hostNotSetUp,
                message: "\(url.path) is not a host identity file: \(DecodingFailure.describe(error))")
        }
    }

    /// Writes the identity into `directory` with mode 0600 (it holds the credential), atomically.
    /// - Throws: ``OrchestratorError`` when the file cannot be written.
    public func save(to directory: URL) throws {
        let url = directory.appendingPathComponent(Self.fileName)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try PrivateFiles.directory(directory.path)
            try PrivateFiles.write(Array(try encoder.encode(self)), to: url.path)
        } catch {
            throw OrchestratorError(code: .fileSystem, message: "cannot write \(url.path): \(error)")
        }
    }

    /// The key this host signs its events with.
    public var eventKey: HostEventKey { HostEventKey(credential: credential) }
}
