#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The one error type of `AgentJobsOrchestrator`.
///
/// `code` is stable and meant for programs (the orchestrator maps some codes to run events, e.g.
/// ``Code-swift.struct/agentNotFound`` to `RunRejected`); `message` is for people and says what to do
/// next. Neither contains environment values handed to agents (they may carry secrets).
public struct OrchestratorError: Error, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// A stable, extensible error code. Compare with the static members; `rawValue` is the
    /// stable string used on the wire (`orchestrator.*`).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The stable string form, e.g. `orchestrator.agent_not_found`.
        public let rawValue: String

        private init(_ rawValue: String) { self.rawValue = rawValue }

        public var description: String { rawValue }

        /// The agent's image (docker) or command (process) does not exist on this host. The run
        /// cannot start here: the orchestrator reports it as rejected.
        public static let agentNotFound = Code("orchestrator.agent_not_found")
        /// The agent type has no image or command configured, or is a persistent agent type.
        public static let agentNotConfigured = Code("orchestrator.agent_not_configured")
        /// A configuration value is missing or out of range.
        public static let invalidConfiguration = Code("orchestrator.invalid_configuration")
        /// The Docker daemon could not be reached on its socket.
        public static let dockerUnavailable = Code("orchestrator.docker_unavailable")
        /// The Docker daemon speaks an Engine API older than ``DockerDriver/minimumAPIVersion``.
        public static let dockerAPIVersionUnsupported = Code("orchestrator.docker_api_version_unsupported")
        /// The Docker daemon did not answer a request in time.
        public static let dockerTimedOut = Code("orchestrator.docker_timed_out")
        /// The Docker daemon answered a request with an error.
        public static let dockerRequestFailed = Code("orchestrator.docker_request_failed")
        /// An agent for this run was already launched by this driver (a dispatch handled twice).
        public static let alreadyLaunched = Code("orchestrator.already_launched")
        /// Starting the agent failed for a reason other than a missing image or command.
        public static let launchFailed = Code("orchestrator.launch_failed")
        /// The handle names no agent this driver knows (it was removed, or never existed).
        public static let unknownAgent = Code("orchestrator.unknown_agent")
        /// After SIGTERM, the grace period and SIGKILL, the agent could not be confirmed gone.
        public static let stopUnconfirmed = Code("orchestrator.stop_unconfirmed")
        /// Reading or writing the run's log files or the driver's state files failed.
        public static let fileSystem = Code("orchestrator.file_system")
        /// The host is not set up: no or an unreadable host identity, an unusable data dir.
        public static let hostNotSetUp = Code("orchestrator.host_not_set_up")
    }

    /// The stable code.
    public var code: Code
    /// What happened and what to do next.
    public var message: String
    /// Technical detail for logs (HTTP status, errno, daemon's message); never shown to users as is.
    public var detail: String?

    /// The system's error number, when a system call failed.
    public var errorNumber: Int32?

    /// Creates an error.
    public init(code: Code, message: String, detail: String? = nil, errorNumber: Int32? = nil) {
        self.code = code
        self.message = message
        self.detail = detail
        self.errorNumber = errorNumber
    }

    /// Whether the same launch may succeed a little later: the Docker daemon could not be reached
    /// or did not answer in time, or the host ran short of processes, memory or file descriptors.
    /// Anything else (a missing image or command, a refusal, a full disk) fails the same way again.
    public var isTransient: Bool {
        switch code {
        case .dockerUnavailable, .dockerTimedOut: true
        case .launchFailed, .fileSystem:
            errorNumber.map { [EAGAIN, ENOMEM, EMFILE, ENFILE].contains($0) } ?? false
        default: false
        }
    }

    public var description: String { "\(code): \(message)" }

    public var debugDescription: String {
        detail.map { "\(description) [\($0)]" } ?? description
    }
}
