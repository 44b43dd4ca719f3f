import AgentJobsCore
import AgentJobsTestSupport
import Foundation
import Logging
import Testing

@testable import AgentJobsOrchestrator

/// The repository's root (for deploy/agents).
let repositoryRoot = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path()

/// Selection of the Docker integration tier.
///
/// The daemon comes from `AGENTJOBS_TEST_DOCKER_SOCKET` (a unix socket path, as printed by
/// `deploy/testenv/docker.sh start`). Without it the docker cases are skipped with a reason,
/// except in CI (`CI=true`), where they fail so that a CI run can never pass by silently
/// skipping them.
enum DockerTestEnvironment {
    static let service = RequiredService.dockerEngine
    static var socketPath: String? { service.value }
    /// Run the docker tier when a daemon is named, or in CI (to fail loudly).
    static var shouldRun: Bool { service.shouldRun }
    static var skipReason: Comment { service.skipReason }

    /// The socket path; otherwise cancels the current test case with the reason (locally) or
    /// throws (in CI).
    static func requireSocket() throws -> String { try service.require() }
}

/// The drivers the conformance suite runs against.
enum DriverKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case process
    case docker

    var testDescription: String { rawValue }

    /// The drivers to test here: docker only with a daemon, or in CI (where a missing daemon fails
    /// the docker cases); the "docker tier" test shows why it was left out.
    static var selected: [DriverKind] { DockerTestEnvironment.shouldRun ? allCases : [.process] }
}

/// One test's driver, with its own temporary runs and state directories. ``run(_:_:)`` removes
/// what the test started, even when it fails.
struct DriverFixture: Sendable {
    let kind: DriverKind
    let root: String
    /// This fixture's host: tests run in parallel on one Docker engine, each as its own host.
    let hostId = "host_test\(UUID().uuidString.prefix(8).lowercased())"
    let catalog: AgentCatalog
    let socketPath: String?
    let rotation: LogRotationPolicy
    let driver: any AgentDriver

    private init(kind: DriverKind, root: String, socketPath: String?) throws {
        self.kind = kind
        self.root = root
        self.socketPath = socketPath
        catalog = AgentCatalog.sampleAgents(scriptsDirectory: repositoryRoot + "deploy/agents")
        rotation = try LogRotationPolicy(maxFileBytes: 64 * 1024, maxFiles: 3)
        driver = Self.makeDriver(kind: kind, root: root, socketPath: socketPath, rotation: rotation, hostId: hostId)
    }

    private static func makeDriver(
        kind: DriverKind, root: String, socketPath: String?, rotation: LogRotationPolicy, hostId: String
    ) -> any AgentDriver {
        switch kind {
        case .process:
            return ProcessDriver(
                configuration: ProcessDriverConfiguration(stateDirectory: root + "/state", logRotation: rotation),
                logger: testLogger("process-driver"))
        case .docker:
            return DockerDriver(
                configuration: DockerDriverConfiguration(
                    socketPath: socketPath ?? "", networkMode: "none", logRotation: rotation),
                hostId: hostId, logger: testLogger("docker-driver"))
        }
    }

    /// A second driver over the same state, as a restarted orchestrator would create it.
    func restartedDriver() -> any AgentDriver {
        Self.makeDriver(kind: kind, root: root, socketPath: socketPath, rotation: rotation, hostId: hostId)
    }

    var dockerDriver: DockerDriver? { driver as? DockerDriver }

    /// Runs `body` with a fresh fixture, then stops every agent the fixture's runs still have and
    /// removes its directories.
    static func run(_ kind: DriverKind, _ body: (DriverFixture) async throws -> Void) async throws {
        let socketPath = kind == .docker ? try DockerTestEnvironment.requireSocket() : nil
        let root = FileManager.default.temporaryDirectory.appending(
            path: "agentjobs-driver-\(kind.rawValue)-\(UUID().uuidString.prefix(8))"
        ).path()
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let fixture = try DriverFixture(kind: kind, root: root, socketPath: socketPath)
        do {
            try await body(fixture)
        } catch {
            await fixture.cleanUp()
            throw error
        }
        await fixture.cleanUp()
    }

    private func cleanUp() async {
        if let handles = try? await driver.list() {
            for handle in handles where handle.logDirectory.hasPrefix(root) {
                _ = try? await driver.stop(handle, grace: .zero)
                try? await driver.release(handle)
            }
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// A unique run id.
    func newRunId() -> String { "run_test\(UUID().uuidString.prefix(12).lowercased())" }

    /// The launch of a run of `type` with `parameters`, logging into `runs/<run-id>`.
    func launch(_ type: AgentType, _ parameters: AgentParameters, runId: String? = nil) throws -> AgentLaunch {
        let runId = runId ?? newRunId()
        return try catalog.launch(
            runId: runId, jobId: "job_test", hostId: hostId, dispatchEpoch: 3, agentType: type,
            parameters: parameters, logDirectory: root + "/runs/" + runId,
            driver: kind == .docker ? .docker : .process)
    }

    /// Whether anything of the run is left: a container labelled with its run id (docker), or a
    /// process in its process group (process: `kill(-pgid, 0)` does not fail with ESRCH).
    func somethingRemains(of handle: AgentHandle) async throws -> Bool {
        switch kind {
        case .docker:
            return try await !dockerDriver!.containers(labels: ["\(DockerDriver.Labels.runId)=\(handle.runId)"]).isEmpty
        case .process:
            let group = try #require(handle.processGroup)
            return !(kill(-group, 0) == -1 && errno == ESRCH)
        }
    }
}

/// Waits (polling, up to `seconds`) until `condition` holds; false when it never did.
func eventually(within seconds: Double = 20, _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try condition()
}

func contents(_ path: String) -> String {
    (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}
