import AgentJobsCore

/// Runs agents on this host: the one interface the orchestrator uses, whatever runs the agent
/// (a Docker container, or a child process).
///
/// Every implementation passes the same conformance suite (`AgentJobsOrchestratorTests`). The
/// contract:
/// - ``launch(_:)`` starts the agent and returns at once; its stdout and stderr end up in
///   `stdout.log` and `stderr.log` in the run's log directory (rotated by size), and the agent
///   finds that directory in the `AGENTJOBS_LOG_DIR` environment variable.
/// - ``wait(_:)`` returns when the agent has ended; afterwards nothing of it runs any more. The
///   driver keeps what it needs to report that end again (a record, a stopped container) until
///   ``release(_:)``: an orchestrator that dies between the agent's end and journaling it learns
///   the end from ``list()`` after its restart instead of guessing.
/// - ``stop(_:grace:)`` is SIGTERM, the grace period, SIGKILL, and a confirmation that nothing of
///   the agent remains; it throws rather than hang when the confirmation does not come.
/// - ``list()`` finds the agents this driver started on this host, also from a previous
///   orchestrator process, so a restarted orchestrator can re-attach to them.
public protocol AgentDriver: Sendable {
    /// Starts an agent.
    /// - Parameter launch: What to run, for which run, and where its logs go.
    /// - Returns: The handle to wait on or stop the agent with.
    /// - Throws: ``OrchestratorError`` with ``OrchestratorError/Code-swift.struct/agentNotFound``
    ///   when the image or command does not exist (the run is then rejected), or
    ///   ``OrchestratorError/Code-swift.struct/alreadyLaunched`` when this run already has an agent.
    func launch(_ launch: AgentLaunch) async throws -> AgentHandle

    /// Waits until the agent has ended and cleans up after it (stragglers, container).
    /// - Returns: How the agent ended.
    /// - Throws: ``OrchestratorError`` when the agent is unknown or the driver failed; `CancellationError`
    ///   when the calling task is cancelled (the agent keeps running).
    func wait(_ handle: AgentHandle) async throws -> AgentExit

    /// Stops an agent: SIGTERM, then after `grace` SIGKILL, then confirms that nothing of it remains.
    /// - Parameters:
    ///   - handle: The agent.
    ///   - grace: How long the agent may take to exit after SIGTERM.
    /// - Returns: How the agent ended and whether it had to be killed.
    /// - Throws: ``OrchestratorError`` with ``OrchestratorError/Code-swift.struct/stopUnconfirmed``
    ///   when the agent could not be confirmed gone within a bounded time after SIGKILL.
    func stop(_ handle: AgentHandle, grace: Duration) async throws -> StopOutcome

    /// The agents this driver started on this host that have not been released yet, running or
    /// ended; used to reconcile after an orchestrator restart.
    func list() async throws -> [AgentHandle]

    /// The agent a launch of `runId` started, running or ended and not released, or nil. Unlike
    /// ``list()``, it touches nothing of any other run: it is asked while other launches are under
    /// way (before a launch is tried again after a failure that may have started the agent all
    /// the same).
    func agent(ofRun runId: String) async throws -> AgentHandle?

    /// The runs whose agents this driver holds (running, ended and not released, or half
    /// launched), changing nothing: for retention, which runs beside launches.
    func heldRunIds() async throws -> Set<String>

    /// Forgets an agent whose end the orchestrator has recorded durably: removes its record
    /// (process) or its stopped container (docker). Releasing twice, or an unknown agent, is fine.
    /// - Throws: ``OrchestratorError`` when the driver could not remove what it keeps.
    func release(_ handle: AgentHandle) async throws
}

extension AgentDriver {
    /// Looks `runId` up in ``list()``: for a driver whose list changes nothing.
    public func agent(ofRun runId: String) async throws -> AgentHandle? {
        try await list().first { $0.runId == runId }
    }

    /// The run ids of ``list()``: for a driver whose list changes nothing.
    public func heldRunIds() async throws -> Set<String> {
        Set(try await list().map(\.runId))
    }
}

/// Everything a driver needs to start one agent.
public struct AgentLaunch: Sendable, Hashable {
    public var runId: String
    public var jobId: String
    public var hostId: String
    /// The run's dispatch epoch, recorded with the agent so reconcile can tell stale launches apart.
    public var dispatchEpoch: Int
    public var agentType: AgentType
    /// What to run: the image reference (docker driver) or the executable, looked up in `PATH`
    /// when it has no slash (process driver).
    public var program: String
    /// The arguments after the program (docker: the container's command, after the image's entrypoint).
    public var arguments: [String]
    /// Environment variables for the agent, in addition to the ones the driver sets
    /// (`AGENTJOBS_LOG_DIR`, `AGENTJOBS_RUN_ID`).
    public var environment: [String: String]
    /// The run's log directory on this host (`…/runs/<run-id>`); created when missing.
    public var logDirectory: String

    /// Creates a launch description.
    public init(
        runId: String, jobId: String, hostId: String, dispatchEpoch: Int, agentType: AgentType, program: String,
        arguments: [String], environment: [String: String] = [:], logDirectory: String
    ) {
        self.runId = runId
        self.jobId = jobId
        self.hostId = hostId
        self.dispatchEpoch = dispatchEpoch
        self.agentType = agentType
        self.program = program
        self.arguments = arguments
        self.environment = environment
        self.logDirectory = logDirectory
    }
}

/// A started agent, as the driver that started it identifies it.
public struct AgentHandle: Sendable, Hashable, Codable {
    /// The driver's own id of the agent: the container id (docker) or the process id (process).
    public var id: String
    public var runId: String
    public var jobId: String
    public var hostId: String
    public var dispatchEpoch: Int
    public var agentType: AgentType
    /// The run's log directory on this host.
    public var logDirectory: String
    /// For the process driver: the process group of the agent (equal to its process id).
    public var processGroup: Int32?
    /// Whether the agent was running when the handle was made (at launch, or by ``AgentDriver/list()``).
    public var wasRunning: Bool

    /// Creates a handle (drivers make them; tests and the orchestrator read them).
    public init(
        id: String, runId: String, jobId: String, hostId: String, dispatchEpoch: Int, agentType: AgentType,
        logDirectory: String, processGroup: Int32? = nil, wasRunning: Bool
    ) {
        self.id = id
        self.runId = runId
        self.jobId = jobId
        self.hostId = hostId
        self.dispatchEpoch = dispatchEpoch
        self.agentType = agentType
        self.logDirectory = logDirectory
        self.processGroup = processGroup
        self.wasRunning = wasRunning
    }

    /// The file the agent's standard output is captured in.
    public var stdoutPath: String { logDirectory + "/" + AgentLogFiles.stdoutName }
    /// The file the agent's standard error is captured in.
    public var stderrPath: String { logDirectory + "/" + AgentLogFiles.stderrName }
}

/// How an agent ended.
public struct AgentExit: Sendable, Hashable, Codable {
    /// The exit status; for an agent killed by a signal, `128 + signal` as shells and Docker report it.
    /// `nil` when the driver could not learn it (a process that ended while no orchestrator was its parent).
    public var exitCode: Int32?
    /// The signal that ended the agent, if one did. Docker reports only `128 + signal`, so for
    /// containers this is inferred from exit codes 129…159.
    public var signal: Int32?

    /// Creates a value.
    public init(exitCode: Int32?, signal: Int32? = nil) {
        self.exitCode = exitCode
        self.signal = signal
    }

    /// Whether the agent ended by a signal.
    public var killedBySignal: Bool { signal != nil }
    /// Whether the agent ended as a stop ends it: by SIGTERM or SIGKILL, or with the status a shell
    /// reports for them (143, 137), or unknown. An agent that ignored the stop's SIGTERM and then
    /// exited with its own status did not end by the stop.
    public var endedByStop: Bool {
        guard let exitCode else { return true }
        return signal != nil || exitCode == 143 || exitCode == 137  // 128 + SIGTERM, 128 + SIGKILL
    }

    /// Whether a run with a recorded cancel ends `canceled`: when its end is unknown, or when a stop
    /// was sent for the cancel and the agent ended by it. Otherwise the agent's own end is reported
    /// (it ended before the stop, or ignored SIGTERM and exited with its own status in the grace).
    public static func endsCanceled(_ exit: AgentExit?, stopSentForCancel: Bool) -> Bool {
        guard let exit else { return true }
        return stopSentForCancel && exit.endedByStop
    }
    /// Whether the agent reported success (exit status 0).
    public var succeeded: Bool { exitCode == 0 && signal == nil }
}

/// What ``AgentDriver/stop(_:grace:)`` did.
public struct StopOutcome: Sendable, Hashable {
    /// How the agent ended (its exit code is unknown when it had ended before the stop).
    public var exit: AgentExit
    /// Whether SIGKILL was needed because the agent outlived the grace period.
    public var killed: Bool
    /// Whether the agent had already ended before the stop sent anything.
    public var alreadyEnded: Bool

    /// Creates a value.
    public init(exit: AgentExit, killed: Bool, alreadyEnded: Bool = false) {
        self.exit = exit
        self.killed = killed
        self.alreadyEnded = alreadyEnded
    }
}
