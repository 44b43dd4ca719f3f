import AgentJobsCore
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore

/// Configuration of the ``DockerDriver``.
public struct DockerDriverConfiguration: Sendable, Hashable, Codable {
    /// The Docker daemon's unix socket.
    public var socketPath: String
    /// The containers' `HostConfig.NetworkMode` (`bridge`, `host`, `none`, a network name).
    public var networkMode: String
    /// Memory limit per agent container, in bytes (nil: none).
    public var memoryBytes: Int64?
    /// CPU limit per agent container, in CPUs (e.g. 1.5; nil: none).
    public var cpus: Double?
    /// Where the run's log directory is mounted inside the container (`AGENTJOBS_LOG_DIR`).
    public var containerLogDirectory: String
    /// Rotation of `stdout.log` and `stderr.log`; Docker's own json-file log of the running
    /// container is capped the same way.
    public var logRotation: LogRotationPolicy
    /// Runs Docker's init (tini) as the container's PID 1. A shell as PID 1 ignores SIGTERM (the
    /// kernel gives PID 1 no default signal actions), so without it every stop would wait out the
    /// grace period; the init forwards signals and reaps the agent's helpers.
    public var useInit: Bool
    /// Timeout of ordinary requests to the daemon, in seconds.
    public var requestTimeoutSeconds: Double
    /// How long a stop may take beyond the grace period (the daemon's SIGKILL and removal), in seconds.
    public var stopMarginSeconds: Double

    /// Creates a configuration.
    public init(
        socketPath: String = "/var/run/docker.sock", networkMode: String = "bridge", memoryBytes: Int64? = nil,
        cpus: Double? = nil, containerLogDirectory: String = "/agentjobs/logs",
        logRotation: LogRotationPolicy = .default,
        useInit: Bool = true, requestTimeoutSeconds: Double = 30, stopMarginSeconds: Double = 30
    ) {
        self.socketPath = socketPath
        self.networkMode = networkMode
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.containerLogDirectory = containerLogDirectory
        self.logRotation = logRotation
        self.useInit = useInit
        self.requestTimeoutSeconds = requestTimeoutSeconds
        self.stopMarginSeconds = stopMarginSeconds
    }

    private enum CodingKeys: String, CodingKey {
        case socketPath, networkMode, memoryBytes, cpus, containerLogDirectory, logRotation, useInit
        case requestTimeoutSeconds, stopMarginSeconds
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = DockerDriverConfiguration()
        self.init(
            socketPath: try container.decodeIfPresent(String.self, forKey: .socketPath) ?? defaults.socketPath,
            networkMode: try container.decodeIfPresent(String.self, forKey: .networkMode) ?? defaults.networkMode,
            memoryBytes: try container.decodeIfPresent(Int64.self, forKey: .memoryBytes),
            cpus: try container.decodeIfPresent(Double.self, forKey: .cpus),
            containerLogDirectory: try container.decodeIfPresent(String.self, forKey: .containerLogDirectory)
                ?? defaults.containerLogDirectory,
            logRotation: try container.decodeIfPresent(LogRotationPolicy.self, forKey: .logRotation)
                ?? defaults.logRotation,
            useInit: try container.decodeIfPresent(Bool.self, forKey: .useInit) ?? defaults.useInit,
            requestTimeoutSeconds: try container.decodeIfPresent(Double.self, forKey: .requestTimeoutSeconds)
                ?? defaults.requestTimeoutSeconds,
            stopMarginSeconds: try container.decodeIfPresent(Double.self, forKey: .stopMarginSeconds)
                ?? defaults.stopMarginSeconds)
    }
}

/// Runs each agent as a Docker container, through the Engine API on the daemon's unix socket.
///
/// - Images are never pulled: making them available on the host is the deployment's job, and a
///   missing image is ``OrchestratorError/Code-swift.struct/agentNotFound`` (the run is rejected).
/// - Containers are named `agentjobs-<run-id>` (a dispatch handled twice cannot start a second
///   one) and labelled with ``Labels``, by which ``list()`` finds them after a restart.
/// - The run's log directory is bind-mounted at ``DockerDriverConfiguration/containerLogDirectory``
///   (`AGENTJOBS_LOG_DIR`), so per-connection logs the agent writes there are on the host.
/// - While the container runs, Docker keeps its output (json-file, capped like our files); when
///   it has ended, the driver copies the output into `stdout.log`/`stderr.log` and removes the
///   container: no container outlives its run.
public struct DockerDriver: AgentDriver {
    /// The Engine API versions this driver works with: 1.41 (Docker 20.10) and newer.
    public static var minimumAPIVersion: String { DockerEngineClient.minimumAPIVersion.description }

    /// The labels every agent container carries.
    public enum Labels {
        public static let managed = "agentjobs.managed"
        public static let runId = "agentjobs.run-id"
        public static let jobId = "agentjobs.job-id"
        public static let hostId = "agentjobs.host-id"
        public static let dispatchEpoch = "agentjobs.dispatch-epoch"
        public static let agentType = "agentjobs.agent-type"
        /// The run's log directory on the host, so a restarted orchestrator knows it.
        public static let logDirectory = "agentjobs.log-dir"
    }

    public let configuration: DockerDriverConfiguration
    /// The host this driver runs agents for: ``list()`` sees only its containers.
    public let hostId: String?
    let engine: DockerEngineClient
    private let logger: Logger
    private let memo = CompletionMemo()

    /// Creates a driver. Nothing is sent to the daemon until the first call.
    /// - Parameters:
    ///   - configuration: Socket, limits, log rotation.
    ///   - httpClient: The client to talk to the daemon with (``HTTPClient/dockerEngine`` by
    ///     default); long requests (wait) are re-issued in slices, so its read timeout does no harm.
    ///   - hostId: The host whose orchestrator uses this driver. ``list()`` then sees only that
    ///     host's containers (an engine may serve several orchestrators) and removes those a launch
    ///     created but never started. Without it, every managed container is listed and a
    ///     never-started one is left alone.
    ///   - logger: For lines about runs, with run, job and host ids as metadata.
    public init(
        configuration: DockerDriverConfiguration, hostId: String? = nil, httpClient: HTTPClient = .dockerEngine,
        logger: Logger
    ) {
        self.configuration = configuration
        self.hostId = hostId
        self.engine = DockerEngineClient(
            socketPath: configuration.socketPath, httpClient: httpClient,
            requestTimeoutSeconds: configuration.requestTimeoutSeconds)
        self.logger = logger
    }

    /// Checks that the daemon answers and speaks API 1.41 or newer.
    /// - Returns: The API version the driver uses.
    /// - Throws: ``OrchestratorError`` `dockerUnavailable` or `dockerAPIVersionUnsupported`.
    @discardableResult
    public func checkDaemon() async throws -> String {
        try await engine.apiVersion().description
    }

    // MARK: launch

    // Docker Engine API field names, as the engine spells them.
    // swift-format-ignore: AlwaysUseLowerCamelCase
    private struct CreateContainer: Encodable, Sendable {
        struct HostConfig: Encodable, Sendable {
            struct LogConfig: Encodable, Sendable {
                var `Type`: String
                var Config: [String: String]
            }
            var Binds: [String]
            var NetworkMode: String
            var Memory: Int64?
            var NanoCpus: Int64?
            var Init: Bool?
            var LogConfig: LogConfig
            /// Capabilities taken from the agent: device nodes it could plant in its log mount would be
            /// opened by the orchestrator on the host.
            var CapDrop: [String] = ["MKNOD"]
        }
        var Image: String
        var Cmd: [String]
        var Env: [String]
        var Labels: [String: String]
        var HostConfig: HostConfig
    }

    public func launch(_ launch: AgentLaunch) async throws -> AgentHandle {
        try checkRunId(launch.runId)
        // A relative bind source would make Docker create a named volume instead of mounting the directory.
        guard launch.logDirectory.hasPrefix("/") else {
            throw OrchestratorError(
                code: .invalidConfiguration, message: "the run's log directory must be an absolute path")
        }
        do {
            try FileManager.default.createDirectory(atPath: launch.logDirectory, withIntermediateDirectories: true)
        } catch {
            throw OrchestratorError(
                code: .fileSystem, message: "could not create \(launch.logDirectory)", detail: "\(error)")
        }
        var environment = launch.environment
        environment["AGENTJOBS_LOG_DIR"] = configuration.containerLogDirectory
        environment["AGENTJOBS_RUN_ID"] = launch.runId
        environment["AGENTJOBS_JOB_ID"] = launch.jobId
        let labels = [
            Labels.managed: "true", Labels.runId: launch.runId, Labels.jobId: launch.jobId,
            Labels.hostId: launch.hostId, Labels.dispatchEpoch: String(launch.dispatchEpoch),
            Labels.agentType: launch.agentType.rawValue, Labels.logDirectory: launch.logDirectory,
        ]
        let rotation = configuration.logRotation
        let body = CreateContainer(
            Image: launch.program, Cmd: launch.arguments,
            Env: environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }, Labels: labels,
            HostConfig: .init(
                Binds: ["\(launch.logDirectory):\(configuration.containerLogDirectory)"],
                NetworkMode: configuration.networkMode, Memory: configuration.memoryBytes,
                NanoCpus: configuration.cpus.map { Int64($0 * 1e9) }, Init: configuration.useInit ? true : nil,
                LogConfig: .init(
                    Type: "json-file",
                    Config: ["max-size": String(rotation.maxFileBytes), "max-file": String(rotation.maxFiles)])))

        let id = try await createContainer(named: "agentjobs-\(launch.runId)", body, launch)
        let handle = AgentHandle(
            id: id, runId: launch.runId, jobId: launch.jobId, hostId: launch.hostId,
            dispatchEpoch: launch.dispatchEpoch, agentType: launch.agentType, logDirectory: launch.logDirectory,
            wasRunning: true)

        let started = try await engine.send(.POST, path: "/containers/\(id)/start")
        guard started.isSuccess || started.status == 304 else {
            // A container that never ran is of no use to anyone: do not leave it behind.
            _ = try? await engine.send(.DELETE, path: "/containers/\(id)", query: [("force", "1")])
            let notFound =
                started.message.contains("executable file not found") || started.message.contains("no such file")
            throw OrchestratorError(
                code: notFound ? .agentNotFound : .launchFailed,
                message: "Docker could not start the agent container: \(started.message)",
                detail: "HTTP \(started.status)")
        }
        logger(for: handle).info("agent container started", metadata: ["container": "\(id.prefix(12))"])
        return handle
    }

    /// Creates the run's container and returns its id.
    ///
    /// A create the daemon does not answer in time (a loaded host) is not a refusal: the daemon
    /// may create the container all the same, later. The container's name is the run's, so it is
    /// looked up: created and never started, it is this launch's, and is used; absent, the create
    /// is sent again (at most three attempts). Rejecting the run instead would have left a
    /// container behind for a run recorded as never launched.
    private func createContainer(named name: String, _ body: CreateContainer, _ launch: AgentLaunch) async throws
        -> String
    {
        for attempt in 1...3 {
            let created: DockerEngineClient.Response
            do {
                created = try await engine.send(.POST, path: "/containers/create", query: [("name", name)], json: body)
            } catch let error as OrchestratorError where error.code == .dockerTimedOut {
                if let id = try await Self.createdNeverStarted(name, engine: engine) { return id }
                if attempt == 3 { throw error }
                logger.warning(
                    "the Docker daemon did not answer a container create in time; trying again",
                    metadata: ["run_id": "\(launch.runId)", "attempt": "\(attempt)"])
                continue
            }
            switch created.status {
            case 201:
                // Docker Engine API field names, as the engine spells them.
                // swift-format-ignore: AlwaysUseLowerCamelCase
                struct Created: Decodable { var Id: String }
                return try created.decode(Created.self).Id
            case 404:
                throw OrchestratorError(
                    code: .agentNotFound,
                    message:
                        "the agent image '\(launch.program)' is not on this host; load or pull it, or fix the agent configuration",
                    detail: created.message)
            case 409:
                // After a timed-out attempt: the late create was ours if the container never started.
                if attempt > 1, let id = try await Self.createdNeverStarted(name, engine: engine) { return id }
                throw OrchestratorError(
                    code: .alreadyLaunched, message: "run \(launch.runId) already has a container on this host",
                    detail: created.message)
            default:
                throw OrchestratorError(
                    code: .launchFailed, message: "Docker refused to create the agent container: \(created.message)",
                    detail: "HTTP \(created.status)")
            }
        }
        throw OrchestratorError(code: .dockerTimedOut, message: "the Docker daemon did not create the agent container")
    }

    /// The id of the container `name` when it exists and was never started (Docker's `created`
    /// state), else `nil`.
    private static func createdNeverStarted(_ name: String, engine: DockerEngineClient) async throws -> String? {
        let response = try await engine.send(.GET, path: "/containers/\(name)/json")
        guard response.isSuccess else { return nil }
        // Docker Engine API field names, as the engine spells them.
        // swift-format-ignore: AlwaysUseLowerCamelCase
        struct Inspected: Decodable {
            struct State: Decodable { var Status: String }
            var Id: String
            var State: State
        }
        let inspected = try response.decode(Inspected.self)
        return inspected.State.Status == "created" ? inspected.Id : nil
    }

    // MARK: wait

    public func wait(_ handle: AgentHandle) async throws -> AgentExit {
        if let exit = await memo.result(handle.runId) { return exit }
        while true {
            // Re-issued in slices: a request held for hours would meet the HTTP client's read
            // timeout, and `condition=not-running` answers at once for a container that has ended.
            let response: DockerEngineClient.Response
            do {
                response = try await engine.send(
                    .POST, path: "/containers/\(handle.id)/wait", query: [("condition", "not-running")],
                    timeout: .seconds(60))
            } catch let error as OrchestratorError where error.code == .dockerTimedOut {
                try Task.checkCancellation()
                continue
            }
            if response.status == 404 {
                if let exit = await memo.result(handle.runId) { return exit }
                throw unknown(handle)
            }
            guard response.isSuccess else { throw engine.failure("waiting for the agent container", response) }
            return try await finish(handle)
        }
    }

    /// The end of an agent, once: its exit from inspect, its output copied into the log files. The
    /// stopped container stays until ``release(_:)``.
    private func finish(_ handle: AgentHandle) async throws -> AgentExit {
        let engine = self.engine
        let rotation = configuration.logRotation
        let timeout = TimeAmount.milliseconds(Int64(configuration.requestTimeoutSeconds * 1000))
        let logger = logger(for: handle)
        return try await memo.once(handle.runId) {
            let state = try await Self.inspect(handle, engine: engine)
            guard let state, !state.Running else {
                if state == nil { throw OrchestratorError(code: .unknownAgent, message: "the agent container is gone") }
                throw OrchestratorError(
                    code: .dockerRequestFailed,
                    message: "the agent container is still running after Docker reported its end")
            }
            try await Self.collectLogs(handle, engine: engine, rotation: rotation, timeout: timeout)
            let code = Int32(clamping: state.ExitCode)
            let exit = AgentExit(exitCode: code, signal: (129...159).contains(code) ? code - 128 : nil)
            logger.info(
                "agent container ended",
                metadata: ["exit_code": "\(code)", "oom_killed": "\(state.OOMKilled ?? false)"])
            return exit
        }
    }

    // Docker Engine API field names, as the engine spells them.
    // swift-format-ignore: AlwaysUseLowerCamelCase
    struct ContainerState: Decodable, Sendable, Equatable {
        var Running: Bool
        var ExitCode: Int
        var OOMKilled: Bool?
    }

    /// The container's state, or nil when it does not exist.
    private static func inspect(_ handle: AgentHandle, engine: DockerEngineClient) async throws -> ContainerState? {
        let response = try await engine.send(.GET, path: "/containers/\(handle.id)/json")
        if response.status == 404 { return nil }
        guard response.isSuccess else { throw engine.failure("inspecting the agent container", response) }
        // Docker Engine API field names, as the engine spells them.
        // swift-format-ignore: AlwaysUseLowerCamelCase
        struct Inspect: Decodable { var State: ContainerState }
        return try response.decode(Inspect.self).State
    }

    private static func collectLogs(
        _ handle: AgentHandle, engine: DockerEngineClient, rotation: LogRotationPolicy, timeout: TimeAmount
    ) async throws {
        // From the start: a restart that finds the ended container before it was released collects
        // the same output again.
        for path in [handle.stdoutPath, handle.stderrPath] {
            for index in 0..<max(1, rotation.maxFiles) { unlink(index == 0 ? path : "\(path).\(index)") }
        }
        let stdout = try RotatingLogWriter(path: handle.stdoutPath, policy: rotation)
        let stderr = try RotatingLogWriter(path: handle.stderrPath, policy: rotation)
        var demultiplexer = DockerStreamDemultiplexer()
        _ = try await engine.stream(
            "/containers/\(handle.id)/logs", query: [("stdout", "1"), ("stderr", "1"), ("follow", "0")],
            timeout: timeout
        ) { chunk in
            for frame in demultiplexer.feed(chunk.readableBytesView) {
                try (frame.stream == .stderr ? stderr : stdout).write(frame.payload)
            }
        }
    }

    // MARK: stop

    public func stop(_ handle: AgentHandle, grace: Duration) async throws -> StopOutcome {
        if let exit = await memo.result(handle.runId) {
            return StopOutcome(exit: exit, killed: false, alreadyEnded: true)
        }
        guard let state = try await Self.inspect(handle, engine: engine) else {
            if let exit = await memo.result(handle.runId) {
                return StopOutcome(exit: exit, killed: false, alreadyEnded: true)
            }
            throw unknown(handle)
        }
        if !state.Running {
            return StopOutcome(exit: try await finish(handle), killed: false, alreadyEnded: true)
        }
        let logger = logger(for: handle)
        logger.info("stopping agent container", metadata: ["grace": "\(grace)"])
        // Docker's stop is SIGTERM, `t` seconds, SIGKILL. It takes whole seconds: round up, never below the grace.
        let seconds = Int(grace.seconds.rounded(.up))
        let margin = configuration.stopMarginSeconds
        let budget = TimeAmount.milliseconds(Int64((Double(seconds) + margin) * 1000))
        do {
            let stopped = try await engine.send(
                .POST, path: "/containers/\(handle.id)/stop", query: [("t", String(seconds))], timeout: budget)
            guard stopped.isSuccess || stopped.status == 304 || stopped.status == 404 else {
                throw engine.failure("stopping the agent container", stopped)
            }
        } catch let error as OrchestratorError where error.code == .dockerTimedOut || error.code == .dockerRequestFailed
        {
            logger.warning("stop request failed; killing the container", metadata: ["error": "\(error)"])
            _ = try? await engine.send(.POST, path: "/containers/\(handle.id)/kill", query: [("signal", "KILL")])
        }
        // Confirm: the container has ended (a 404 means someone else already finished it).
        let engine = self.engine
        var ended = false
        let deadline = ContinuousClock.now + .seconds(margin)
        while ContinuousClock.now < deadline {
            guard let now = try await Self.inspect(handle, engine: engine) else {
                ended = true
                break
            }
            if !now.Running {
                ended = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        guard ended else {
            throw OrchestratorError(
                code: .stopUnconfirmed,
                message:
                    "the container of run \(handle.runId) still runs after stop and SIGKILL; check the host (`docker ps`)"
            )
        }
        let exit = try await finish(handle)
        return StopOutcome(exit: exit, killed: exit.signal == SIGKILL)
    }

    // MARK: release

    public func release(_ handle: AgentHandle) async throws {
        let removed = try await engine.send(.DELETE, path: "/containers/\(handle.id)", query: [("force", "1")])
        guard removed.isSuccess || removed.status == 404 else {
            throw engine.failure("removing the agent container", removed)
        }
        guard try await containers(labels: ["\(Labels.runId)=\(handle.runId)"]).isEmpty else {
            throw OrchestratorError(
                code: .stopUnconfirmed,
                message:
                    "a container of run \(handle.runId) is still there after its removal; check the host (`docker ps -a`)"
            )
        }
    }

    // MARK: list

    // Docker Engine API field names, as the engine spells them.
    // swift-format-ignore: AlwaysUseLowerCamelCase
    struct ListedContainer: Decodable, Sendable {
        var Id: String
        var State: String
        var Labels: [String: String]?
    }

    /// The label of this host's containers (any managed container when no host is set).
    private var hostLabel: String {
        hostId.map { "\(Labels.hostId)=\($0)" } ?? "\(Labels.managed)=true"
    }

    /// Containers with every label of `labels` (`key=value`), running or not.
    func containers(labels: [String]) async throws -> [ListedContainer] {
        struct Filters: Encodable { var label: [String] }
        let filters = String(decoding: try JSONEncoder().encode(Filters(label: labels)), as: UTF8.self)
        let response = try await engine.send(
            .GET, path: "/containers/json", query: [("all", "1"), ("filters", filters)])
        guard response.isSuccess else { throw engine.failure("listing containers", response) }
        return try response.decode([ListedContainer].self)
    }

    public func list() async throws -> [AgentHandle] {
        var handles: [AgentHandle] = []
        for container in try await containers(labels: [hostLabel]) where container.Labels?[Labels.managed] == "true" {
            if container.State == "created" {
                // A launch of this host that stopped between create and start (the orchestrator was
                // killed): the agent never ran. Removed, so the run is launched, or canceled or timed
                // out without launching, by the same checks as any other; a container read as ended
                // would report an exit that never happened.
                guard hostId != nil else { continue }
                try await removeNeverStarted(container)
                continue
            }
            if let handle = handle(of: container) { handles.append(handle) }
        }
        return handles
    }

    public func heldRunIds() async throws -> Set<String> {
        Set(
            try await containers(labels: [hostLabel]).compactMap { container in
                container.Labels?[Labels.managed] == "true" ? container.Labels?[Labels.runId] : nil
            })
    }

    public func agent(ofRun runId: String) async throws -> AgentHandle? {
        var labels = ["\(Labels.runId)=\(runId)"]
        if let hostId { labels.append("\(Labels.hostId)=\(hostId)") }
        for container in try await containers(labels: labels) where container.Labels?[Labels.managed] == "true" {
            if container.State == "created" {
                // This run's own launch created it and never started it (a start that failed or
                // was not answered in time): removed, so the launch can be sent again.
                try await removeNeverStarted(container)
                continue
            }
            return handle(of: container)
        }
        return nil
    }

    /// Removes a container that was created and never started.
    private func removeNeverStarted(_ container: ListedContainer) async throws {
        let removed = try await engine.send(.DELETE, path: "/containers/\(container.Id)", query: [("force", "1")])
        guard removed.isSuccess || removed.status == 404 else {
            throw engine.failure("removing a container that was never started", removed)
        }
        logger.info(
            "removed a container an interrupted launch never started", metadata: ["container": "\(container.Id)"])
    }

    private func handle(of container: ListedContainer) -> AgentHandle? {
        let labels = container.Labels ?? [:]
        guard let runId = labels[Labels.runId], let jobId = labels[Labels.jobId],
            let hostId = labels[Labels.hostId],
            let agentType = labels[Labels.agentType].flatMap(AgentType.init(rawValue:)),
            let logDirectory = labels[Labels.logDirectory]
        else {
            logger.warning(
                "container labelled as ours lacks labels; skipped", metadata: ["container": "\(container.Id)"])
            return nil
        }
        return AgentHandle(
            id: container.Id, runId: runId, jobId: jobId, hostId: hostId,
            dispatchEpoch: labels[Labels.dispatchEpoch].flatMap(Int.init) ?? 0, agentType: agentType,
            logDirectory: logDirectory, wasRunning: container.State == "running")
    }

    // MARK: helpers

    private func unknown(_ handle: AgentHandle) -> OrchestratorError {
        OrchestratorError(
            code: .unknownAgent, message: "the container of run \(handle.runId) does not exist (any more) on this host")
    }

    private func logger(for handle: AgentHandle) -> Logger {
        var logger = self.logger
        logger[metadataKey: "run_id"] = "\(handle.runId)"
        logger[metadataKey: "job_id"] = "\(handle.jobId)"
        logger[metadataKey: "host_id"] = "\(handle.hostId)"
        return logger
    }
}
