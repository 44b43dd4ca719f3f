// Interim driver contract and process driver, so the worker runs end to end; the `drivers` branch
// (Docker driver, driver conformance suite) replaces this file when it merges.
import AgentJobsCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Launches and supervises agents on this host.
public protocol AgentDriver: Sendable {
    /// Starts an agent.
    func launch(_ launch: AgentLaunch) async throws -> AgentHandle
    /// Waits until the agent ends.
    func wait(_ handle: AgentHandle) async throws -> AgentExit
    /// SIGTERM, `grace`, SIGKILL, then confirms nothing of the agent remains.
    /// - Throws: When that cannot be confirmed.
    func stop(_ handle: AgentHandle, grace: Duration) async throws
    /// The agents this driver started that are still known (running, or ended but not collected).
    func list() async throws -> [AgentHandle]
}

public struct AgentHandle: Sendable, Hashable, Codable {
    public var id: String
    public var runId: String
}

public struct AgentExit: Sendable, Hashable {
    /// `nil` when it is not known (the agent ended while nobody watched).
    public var exitCode: Int32?
}

/// What to start for a run.
public struct AgentLaunch: Sendable, Hashable {
    public var runId: String
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    /// The run's directory: stdout.log, stderr.log and the agent's own logs go here.
    public var logDirectory: URL

    public init(
        runId: String, executable: String, arguments: [String], environment: [String: String], logDirectory: URL
    ) {
        self.runId = runId
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.logDirectory = logDirectory
    }
}

/// Errors of the drivers.
public struct DriverError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Runs each agent as a child process in its own process group, through a small `sh` wrapper that
/// records the exit code in the run directory (so an orchestrator restarted while the agent ran
/// still learns how it ended). The pid and its start time are kept in `agent.pid` for re-attaching.
public struct ProcessDriver: AgentDriver {
    let runsDirectory: URL

    public init(runsDirectory: URL) { self.runsDirectory = runsDirectory }

    public func launch(_ launch: AgentLaunch) async throws -> AgentHandle {
        let directory = launch.logDirectory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: directory.appendingPathComponent("exit-code"))
        guard FileManager.default.isExecutableFile(atPath: launch.executable) || launch.executable.hasPrefix("/bin/")
        else {
            throw DriverError("agent command \(launch.executable) does not exist or is not executable")
        }
        let wrapper =
            #"exec >>"$AGENTJOBS_LOG_DIR/stdout.log" 2>>"$AGENTJOBS_LOG_DIR/stderr.log"; "$0" "$@"; code=$?; echo $code >"$AGENTJOBS_LOG_DIR/exit-code.tmp" && mv "$AGENTJOBS_LOG_DIR/exit-code.tmp" "$AGENTJOBS_LOG_DIR/exit-code"; exit $code"#
        let arguments = ["/bin/sh", "-c", wrapper, launch.executable] + launch.arguments
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AGENTJOBS_") }
        environment.merge(launch.environment) { $1 }
        environment["AGENTJOBS_RUN_ID"] = launch.runId
        environment["AGENTJOBS_LOG_DIR"] = directory.path

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // The agent gets none of the orchestrator's descriptors (its stdout pipe, sockets, the
        // journal): an agent that outlives the orchestrator must not hold them open.
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        Self.closeInheritedDescriptors(&actions)

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw DriverError("cannot start \(launch.executable): \(String(cString: strerror(result)))")
        }
        let handle = AgentHandle(id: "\(pid):\(Self.startTime(of: pid) ?? 0)", runId: launch.runId)
        try Data(handle.id.utf8).write(to: directory.appendingPathComponent("agent.pid"), options: .atomic)
        return handle
    }

    public func wait(_ handle: AgentHandle) async throws -> AgentExit {
        guard let pid = Self.pid(handle) else { throw DriverError("malformed process handle \(handle.id)") }
        // The agent has ended when its whole process group is gone — not just the wrapper — so a
        // run never ends while something it started still runs.
        while true {
            var status: Int32 = 0
            let reaped = waitpid(pid, &status, WNOHANG)
            let leaderGone = reaped == pid || (reaped < 0 && !Self.isAlive(handle))
            if leaderGone && !Self.groupExists(pid) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let codeFile = runsDirectory.appendingPathComponent(handle.runId).appendingPathComponent("exit-code")
        let code = (try? String(contentsOf: codeFile, encoding: .utf8)).flatMap {
            Int32($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return AgentExit(exitCode: code)
    }

    public func stop(_ handle: AgentHandle, grace: Duration) async throws {
        guard let pid = Self.pid(handle) else { throw DriverError("malformed process handle \(handle.id)") }
        guard Self.groupExists(pid) else { return }
        kill(-pid, SIGTERM)
        if await Self.waitUntilGone(pid, for: grace) { return }
        kill(-pid, SIGKILL)
        if await Self.waitUntilGone(pid, for: .seconds(5)) { return }
        throw DriverError("process group \(pid) is still there 5 s after SIGKILL")
    }

    public func list() async throws -> [AgentHandle] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: runsDirectory.path)) ?? []
        return names.compactMap { runId in
            let file = runsDirectory.appendingPathComponent(runId).appendingPathComponent("agent.pid")
            guard let id = try? String(contentsOf: file, encoding: .utf8) else { return nil }
            let handle = AgentHandle(id: id, runId: runId)
            let ended = FileManager.default.fileExists(
                atPath: file.deletingLastPathComponent().appendingPathComponent("exit-code").path)
            return Self.isAlive(handle) || ended ? handle : nil
        }
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// Adds "close every descriptor from 3 up" to the spawn's file actions: glibc's
    /// `posix_spawn_file_actions_addclosefrom_np` (2.34+, looked up at run time because Swift's
    /// Glibc module does not export it), else one close per descriptor open right now.
    static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            let addCloseFrom = unsafeBitCast(symbol, to: AddCloseFrom.self)
            if addCloseFrom(&actions, 3) == 0 { return }
        }
        let open =
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
        for fd in open where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
    }

    static func pid(_ handle: AgentHandle) -> pid_t? { handle.id.split(separator: ":").first.flatMap { pid_t($0) } }

    static func isAlive(_ handle: AgentHandle) -> Bool {
        guard let pid = pid(handle), kill(pid, 0) == 0 || errno == EPERM else { return false }
        let expected = handle.id.split(separator: ":").dropFirst().first.flatMap { UInt64($0) } ?? 0
        guard let start = startTime(of: pid), start == expected else { return false }
        // A zombie has ended.
        return processState(pid) != "Z"
    }

    static func groupExists(_ pgid: pid_t) -> Bool {
        // Reap the leader if it is our child, so a zombie does not count as alive.
        var status: Int32 = 0
        _ = waitpid(pgid, &status, WNOHANG)
        return kill(-pgid, 0) == 0 || errno == EPERM
    }

    static func waitUntilGone(_ pgid: pid_t, for duration: Duration) async -> Bool {
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            if !groupExists(pgid) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return !groupExists(pgid)
    }

    /// Field 22 of /proc/PID/stat: start time in clock ticks since boot (tells a reused pid apart).
    static func startTime(of pid: pid_t) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    static func processState(_ pid: pid_t) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ").first?.first
    }
}
