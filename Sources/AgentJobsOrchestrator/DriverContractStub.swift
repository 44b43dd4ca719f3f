// TEMPORARY: the shape of the driver protocol the `drivers` branch provides; removed when it merges.
import AgentJobsCore
import Foundation

public protocol AgentDriver: Sendable {
    func launch(_ launch: AgentLaunch) async throws -> AgentHandle
    func wait(_ handle: AgentHandle) async throws -> AgentExit
    func stop(_ handle: AgentHandle, grace: Duration) async throws
    func list() async throws -> [AgentHandle]
}

public struct AgentHandle: Sendable, Hashable, Codable {
    public var id: String
    public var runId: String
}

public struct AgentExit: Sendable, Hashable {
    public var exitCode: Int32
}

public struct AgentLaunch: Sendable, Hashable {
    public var runId: String
    public var logDirectory: URL
}
