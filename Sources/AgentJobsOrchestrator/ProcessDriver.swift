#if canImport(Glibc)
    import AgentJobsCore
    import Foundation
    import Glibc
    import Logging

    /// Configuration of the ``ProcessDriver``.
    public struct ProcessDriverConfiguration: Sendable, Hashable, Codable {
        /// Where the driver keeps one record per agent it started (pid, process group, start time),
        /// so that a restarted orchestrator finds the agents still running or learns they are gone.
        public var stateDirectory: String
        /// Rotation of `stdout.log` and `stderr.log`.
        public var logRotation: LogRotationPolicy
        /// How often, while ``ProcessDriver/wait(_:)`` waits, the output files are checked for rotation.
        public var rotationCheckIntervalSeconds: Double
        /// How long the agent's process group may take to disappear after SIGKILL before a stop fails.
        public var killConfirmTimeoutSeconds: Double
        /// The orchestrator's environment variables that agents inherit. Only these: the orchestrator's
        /// own environment may hold credentials (Kafka, database) that agents must not see.
        public var inheritedEnvironment: [String]
        /// The user agents run as (`AGENTJOBS_PROCESS_USER`), switched to with `setpriv` (the
        /// orchestrator must run as root); `nil` runs them as the orchestrator's own user.
        public var agentUser: String?

        /// Creates a configuration.
        public init(
            stateDirectory: String, logRotation: LogRotationPolicy = .default, rotationCheckIntervalSeconds: Double = 2,
            killConfirmTimeoutSeconds: Double = 5,
            inheritedEnvironment: [String] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"],
            agentUser: String? = nil
        ) {
            self.stateDirectory = stateDirectory
            self.logRotation = logRotation
            self.rotationCheckIntervalSeconds = rotationCheckIntervalSeconds
            self.killConfirmTimeoutSeconds = killConfirmTimeoutSeconds
            self.inheritedEnvironment = inheritedEnvironment
            self.agentUser = agentUser
        }

        private enum CodingKeys: String, CodingKey {
            case stateDirectory, logRotation, rotationCheckIntervalSeconds, killConfirmTimeoutSeconds,
                inheritedEnvironment, agentUser
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = ProcessDriverConfiguration(stateDirectory: "")
            self.init(
                stateDirectory: try container.decode(String.self, forKey: .stateDirectory),
                logRotation: try container.decodeIfPresent(LogRotationPolicy.self, forKey: .logRotation)
                    ?? defaults.logRotation,
                rotationCheckIntervalSeconds: try container.decodeIfPresent(
                    Double.self, forKey: .rotationCheckIntervalSeconds) ?? defaults.rotationCheckIntervalSeconds,
                killConfirmTimeoutSeconds: try container.decodeIfPresent(
                    Double.self, forKey: .killConfirmTimeoutSeconds)
                    ?? defaults.killConfirmTimeoutSeconds,
                inheritedEnvironment: try container.decodeIfPresent([String].self, forKey: .inheritedEnvironment)
                    ?? defaults.inheritedEnvironment,
                agentUser: try container.decodeIfPresent(String.self, forKey: .agentUser))
        }
    }

    /// Runs each agent as a child process in its own process group, its output appended to the run's
    /// log files.
    ///
    /// - The agent's process group id is its pid; stop signals the whole group (SIGTERM, grace,
    ///   SIGKILL), so helpers the agent started end with it. When the agent's main process ends, what
    ///   is left of its group is killed, as the processes of a container end with its main process.
    /// - Children are reaped on dedicated threads (``ChildReaper``); the orchestrator becomes the
    ///   subreaper of orphaned agent helpers and reaps those in its agents' groups, so no zombie keeps
    ///   a finished group alive.
    /// - Each agent has a record in ``ProcessDriverConfiguration/stateDirectory``; ``list()`` reads
    ///   them. A process found by a restarted orchestrator is no longer its child: its exit code is
    ///   then unknown (``AgentExit/exitCode`` is nil).
    /// - The agent writes its output files itself (opened with `O_APPEND`), so output is not lost when
    ///   the orchestrator restarts; ``wait(_:)`` rotates them in place while it waits.
    public struct ProcessDriver: AgentDriver {
        public let configuration: ProcessDriverConfiguration
        private let logger: Logger
        private let memo = CompletionMemo()

        /// Creates a driver.
        public init(configuration: ProcessDriverConfiguration, logger: Logger) {
            self.configuration = configuration
            self.logger = logger
        }

        /// What the driver keeps about one agent in ``ProcessDriverConfiguration/stateDirectory``,
        /// from just before its launch until ``release(_:)``.
        struct Record: Codable, Sendable {
            var handle: AgentHandle
            /// The agent's process (and group) id; 0 while the launch is under way (the record is
            /// written before the process starts, so a crash in between cannot hide an agent).
            var pid: pid_t
            var startTime: UInt64
            /// How the agent ended, once the driver learnt it; kept until the orchestrator releases it.
            var exit: AgentExit?

            var isPending: Bool { pid <= 0 }
        }

        // MARK: launch

        public func launch(_ launch: AgentLaunch) async throws -> AgentHandle {
            try checkRunId(launch.runId)
            let recordPath = self.recordPath(launch.runId)
            let user = try configuration.agentUser.map(Self.agentUser)
            try createDirectory(launch.logDirectory)
            if let user {
                // The agent's own directory, and nothing else of the orchestrator's, is its to write.
                guard chown(launch.logDirectory, user.uid, user.gid) == 0, chmod(launch.logDirectory, 0o700) == 0
                else { throw AgentLogFiles.fileError("could not hand \(launch.logDirectory) to user \(user.name)") }
            }
            try createDirectory(configuration.stateDirectory)
            Subreaper.enable()

            let stdoutPath = launch.logDirectory + "/" + AgentLogFiles.stdoutName
            let stderrPath = launch.logDirectory + "/" + AgentLogFiles.stderrName
            let stdoutFile = try RunDirectoryFiles.openForAppending(stdoutPath)
            defer { close(stdoutFile) }
            let stderrFile = try RunDirectoryFiles.openForAppending(stderrPath)
            defer { close(stderrFile) }

            guard Self.resolve(launch.program, path: environment(for: launch)["PATH"]) != nil else {
                throw OrchestratorError(
                    code: .agentNotFound,
                    message:
                        "the agent command '\(launch.program)' does not exist on this host; install it or fix the agent configuration"
                )
            }
            // The agent runs under a small `sh` that records its exit status in the run directory, so
            // an orchestrator restarted while the agent ran still learns how it ended.
            let wrapped = ["/bin/sh", "-c", Self.exitRecorder, launch.program] + launch.arguments
            var environment = environment(for: launch)
            let command: [String]
            if let user {
                environment["HOME"] = user.home
                environment["USER"] = user.name
                environment["LOGNAME"] = user.name
                command =
                    [
                        Self.setpriv, "--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "--inh-caps=-all",
                        "--",
                    ] + wrapped
            } else {
                command = wrapped
            }
            // The record exists before the process: an orchestrator killed between the spawn and the
            // full record finds the agent by its run id (``list()``) instead of launching it again.
            var handle = AgentHandle(
                id: "", runId: launch.runId, jobId: launch.jobId, hostId: launch.hostId,
                dispatchEpoch: launch.dispatchEpoch, agentType: launch.agentType, logDirectory: launch.logDirectory,
                wasRunning: true)
            try create(Record(handle: handle, pid: 0, startTime: 0))
            let pid: pid_t
            do {
                pid = try spawn(
                    command[0], arguments: command, environment: environment, directory: launch.logDirectory,
                    stdout: stdoutFile, stderr: stderrFile)
            } catch {
                unlink(recordPath)
                throw error
            }
            // Read the start time before the reaper can reap the child: a zombie still has its /proc entry.
            let startTime = ProcessTable.entry(pid)?.startTime ?? 0
            ChildReaper.shared.watch(pid)

            handle.id = String(pid)
            handle.processGroup = pid
            do {
                try save(Record(handle: handle, pid: pid, startTime: startTime))
            } catch {
                // Without a record a restarted orchestrator could not find the agent: do not leave it running.
                kill(-pid, SIGKILL)
                unlink(recordPath)
                // The agent has run, if briefly: not a failure to try again, which would start it twice.
                guard var failure = error as? OrchestratorError else { throw error }
                failure.errorNumber = nil
                throw failure
            }
            logger(for: handle).info(
                "agent process started", metadata: ["pid": "\(pid)", "program": "\(launch.program)"])
            return handle
        }

        /// Runs `"$0" "$@"` as a child and writes its exit status to
        /// `$AGENTJOBS_LOG_DIR/exit-code.<wrapper pid>` with shell built-ins only (no `rm` or `mv` to
        /// start per run).
        /// - The name carries the wrapper's pid (the agent's process group, in the driver's record),
        ///   so a file some tool of the agent left under a plain name is never taken for the status.
        /// - The file is created with `set -C`: an existing regular file, or a link the agent planted
        ///   to one, is never overwritten (the status is then unknown after a restart). The wrapper
        ///   runs as the agent's user (after `setpriv`), so a link to anything else reaches nothing
        ///   the agent could not write itself.
        /// - It is read only once the wrapper is gone, and one `write` of a few bytes is never seen
        ///   half done: no temporary file and rename are needed.
        /// - The wrapper catches SIGTERM (sent to the whole group) and keeps waiting, so the grace
        ///   period applies to the agent, not to the wrapper; the trap is set before the agent starts
        ///   (a TERM in between would otherwise end the wrapper early), and a caught signal is reset
        ///   to its default in the agent's subshell, so the agent keeps default signal handling.
        static let exitRecorder = #"""
            trap : TERM INT HUP
            "$0" "$@" & child=$!
            while :; do wait "$child"; code=$?; kill -0 "$child" 2>/dev/null || break; done
            set -C
            printf '%s\n' "$code" 2>/dev/null >"$AGENTJOBS_LOG_DIR/exit-code.$$"
            exit "$code"
            """#

        /// util-linux's `setpriv`, which switches to the agent user before the wrapper starts.
        static let setpriv = "/usr/bin/setpriv"

        /// The account of ``ProcessDriverConfiguration/agentUser``.
        struct AgentUser {
            var name: String
            var uid: uid_t
            var gid: gid_t
            var home: String
        }

        /// Looks up the agent user.
        /// - Throws: ``OrchestratorError`` (`invalidConfiguration`) when the user does not exist, the
        ///   orchestrator cannot switch users (not root) or `setpriv` is missing.
        static func agentUser(_ name: String) throws -> AgentUser {
            guard let entry = getpwnam(name) else {
                throw OrchestratorError(
                    code: .invalidConfiguration,
                    message: "AGENTJOBS_PROCESS_USER names '\(name)', which is not a user of this host")
            }
            guard geteuid() == 0 else {
                throw OrchestratorError(
                    code: .invalidConfiguration,
                    message: "AGENTJOBS_PROCESS_USER needs the orchestrator to run as root (to switch to \(name))")
            }
            guard access(setpriv, X_OK) == 0 else {
                throw OrchestratorError(
                    code: .invalidConfiguration,
                    message: "AGENTJOBS_PROCESS_USER needs \(setpriv) (Debian package util-linux)")
            }
            return AgentUser(
                name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid,
                home: String(cString: entry.pointee.pw_dir))
        }

        /// The exit status the wrapper of process `pid` recorded, if it got to record one. For an
        /// agent whose pid was never recorded (a launch interrupted before its record was complete),
        /// the one `exit-code.<pid>` of its directory. `exit-code` is what the wrapper of the version
        /// before wrote (by a rename, so it is never a file left by the agent): an agent started
        /// before an upgrade still ends with its status.
        static func recordedExit(logDirectory: String, pid: pid_t) -> AgentExit? {
            var name = "exit-code.\(pid)"
            if pid <= 0 {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: logDirectory)) ?? []
                let recorded = names.filter { $0.hasPrefix("exit-code.") && Int32($0.dropFirst(10)) != nil }
                if recorded.count == 1 { name = recorded[0] }
            }
            return exitCode(in: logDirectory + "/" + name) ?? exitCode(in: logDirectory + "/exit-code")
        }

        private static func exitCode(in path: String) -> AgentExit? {
            guard let (bytes, _) = RunDirectoryFiles.tail(path, maxBytes: 16),
                let code = Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            else { return nil }
            return AgentExit(exitCode: code)
        }

        /// The executable `program` names: a path, or a name looked up in `path`.
        static func resolve(_ program: String, path: String?) -> String? {
            if program.contains("/") { return access(program, X_OK) == 0 ? program : nil }
            for directory in (path ?? "/usr/bin:/bin").split(separator: ":") {
                let candidate = "\(directory)/\(program)"
                if access(candidate, X_OK) == 0 { return candidate }
            }
            return nil
        }

        private func environment(for launch: AgentLaunch) -> [String: String] {
            let own = ProcessInfo.processInfo.environment
            var environment: [String: String] = [:]
            for name in configuration.inheritedEnvironment { environment[name] = own[name] }
            if environment["PATH"] == nil { environment["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
            environment.merge(launch.environment) { _, new in new }
            environment["AGENTJOBS_LOG_DIR"] = launch.logDirectory
            environment["AGENTJOBS_RUN_ID"] = launch.runId
            environment["AGENTJOBS_JOB_ID"] = launch.jobId
            return environment
        }

        private func spawn(
            _ program: String, arguments: [String], environment: [String: String], directory: String, stdout: Int32,
            stderr: Int32
        ) throws -> pid_t {
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, stdout, 1)
            posix_spawn_file_actions_adddup2(&actions, stderr, 2)
            // Descriptors the orchestrator opened without O_CLOEXEC (sockets, pipes) must not leak into agents.
            _ = GlibcSpawnExtensions.addCloseFrom?(&actions, 3)
            _ = GlibcSpawnExtensions.addChdir?(&actions, directory)

            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            // Own process group (pgid = pid) so that stop can signal the agent and all its helpers.
            posix_spawnattr_setpgroup(&attributes, 0)
            // Signal dispositions: the orchestrator ignores SIGTERM/SIGINT (ServiceLifecycle handles them)
            // and ignored signals survive exec; the agent must get default dispositions and an empty mask.
            var allSignals = sigset_t()
            sigfillset(&allSignals)
            posix_spawnattr_setsigdefault(&attributes, &allSignals)
            var noSignals = sigset_t()
            sigemptyset(&noSignals)
            posix_spawnattr_setsigmask(&attributes, &noSignals)
            posix_spawnattr_setflags(
                &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

            let argv = arguments.map { strdup($0) }
            defer { for pointer in argv { free(pointer) } }
            let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") }
            defer { for pointer in envp { free(pointer) } }
            var pid: pid_t = 0
            let result = posix_spawnp(&pid, program, &actions, &attributes, argv + [nil], envp + [nil])
            guard result == 0 else {
                let reason = String(cString: strerror(result))
                if result == ENOENT || result == ENOTDIR {
                    throw OrchestratorError(
                        code: .agentNotFound,
                        message:
                            "the agent command '\(program)' does not exist on this host; install it or fix the agent configuration",
                        detail: reason)
                }
                throw OrchestratorError(
                    code: .launchFailed, message: "could not start the agent command '\(program)': \(reason)",
                    detail: "errno \(result)", errorNumber: result)
            }
            return pid
        }

        // MARK: wait

        public func wait(_ handle: AgentHandle) async throws -> AgentExit {
            if let exit = await memo.result(handle.runId) { return exit }
            let record = try load(handle)
            if let exit = record.exit { return exit }
            let policy = configuration.logRotation
            let interval = Duration.seconds(configuration.rotationCheckIntervalSeconds)
            let logger = logger(for: handle)
            let exit = try await withThrowingTaskGroup(of: AgentExit?.self) { group in
                group.addTask { try await leaderExit(record) }
                group.addTask {
                    while true {
                        try await Task.sleep(for: interval)
                        rotate(handle, policy: policy, logger: logger)
                    }
                }
                defer { group.cancelAll() }
                while let next = try await group.next() {
                    if let next { return next }
                }
                throw CancellationError()
            }
            return try await finish(record, exit: exit)
        }

        /// The exit of the agent's main process: from the reaper when it is our child, otherwise by
        /// watching the process table (the exit code is then unknown).
        private func leaderExit(_ record: Record) async throws -> AgentExit {
            if ChildReaper.shared.isWatching(record.pid) {
                let status = try await ChildReaper.shared.status(of: record.pid)
                return status.map(ChildReaper.exit(fromWaitStatus:)) ?? AgentExit(exitCode: nil)
            }
            while ProcessTable.isAlive(record.pid, startTime: record.startTime) {
                try await Task.sleep(for: .milliseconds(200))
            }
            // Not our child (found after a restart): the wrapper recorded the status, unless it was killed.
            return Self.recordedExit(logDirectory: record.handle.logDirectory, pid: record.pid)
                ?? AgentExit(exitCode: nil)
        }

        /// The end of an agent, once: stragglers of its group are killed, the output files rotated,
        /// the exit kept in the record (removed by ``release(_:)``).
        private func finish(_ record: Record, exit: AgentExit) async throws -> AgentExit {
            let handle = record.handle
            let killTimeout = configuration.killConfirmTimeoutSeconds
            let policy = configuration.logRotation
            let logger = logger(for: handle)
            return try await memo.once(handle.runId) {
                if !record.isPending, !Self.groupIsGone(record.pid) {
                    logger.info("agent's main process ended; killing what is left of its process group")
                    kill(-record.pid, SIGKILL)
                    guard try await Self.poll(for: killTimeout, until: { Self.groupIsGone(record.pid) }) else {
                        throw Self.unconfirmed(record)
                    }
                }
                rotate(handle, policy: policy, logger: logger)
                var ended = record
                ended.exit = exit
                do {
                    try save(ended)
                } catch {
                    // The exit is also in the run directory (the wrapper's exit-code file) for a restart.
                    logger.warning("could not keep the agent's exit in its record", metadata: ["error": "\(error)"])
                }
                logger.info(
                    "agent process ended",
                    metadata: [
                        "exit_code": "\(exit.exitCode.map(String.init) ?? "unknown")", "signal": "\(exit.signal ?? 0)",
                    ])
                return exit
            }
        }

        // MARK: stop

        public func stop(_ handle: AgentHandle, grace: Duration) async throws -> StopOutcome {
            if let exit = await memo.result(handle.runId) {
                return StopOutcome(exit: exit, killed: false, alreadyEnded: true)
            }
            let record = try load(handle)
            if let exit = record.exit { return StopOutcome(exit: exit, killed: false, alreadyEnded: true) }
            let group = record.pid
            guard !record.isPending else { throw Self.unconfirmed(record) }
            let logger = logger(for: handle)
            if Self.groupIsGone(group) {
                let exit = try await finish(record, exit: try await leaderExit(record))
                return StopOutcome(exit: exit, killed: false, alreadyEnded: true)
            }
            logger.info("stopping agent: SIGTERM to its process group", metadata: ["grace": "\(grace)"])
            kill(-group, SIGTERM)
            var killed = false
            if try await !Self.poll(for: grace.seconds, until: { Self.groupIsGone(group) }) {
                logger.info("agent outlived the grace period: SIGKILL to its process group")
                killed = true
                kill(-group, SIGKILL)
                guard
                    try await Self.poll(
                        for: configuration.killConfirmTimeoutSeconds, until: { Self.groupIsGone(group) })
                else { throw Self.unconfirmed(record) }
            }
            let exit = try await finish(record, exit: try await leaderExit(record))
            return StopOutcome(exit: exit, killed: killed)
        }

        private static func unconfirmed(_ record: Record) -> OrchestratorError {
            OrchestratorError(
                code: .stopUnconfirmed,
                message:
                    "processes of run \(record.handle.runId) (process group \(record.pid)) are still there after SIGKILL; check the host (`ps -g \(record.pid)`)"
            )
        }

        /// Whether nothing of the process group runs any more. Zombies of the group that are this
        /// process's children are reaped (the main process by its reaper thread); zombies that belong
        /// to another parent run nothing and cannot be reaped from here, so they do not count.
        static func groupIsGone(_ group: pid_t) -> Bool {
            if kill(-group, 0) != 0 && errno == ESRCH { return true }
            let me = getpid()
            var pending = false
            for member in ProcessTable.members(ofGroup: group) {
                guard member.isZombie else {
                    pending = true
                    continue
                }
                guard member.parentPid == me else { continue }
                if ChildReaper.shared.isWatching(member.pid) {
                    pending = true
                    continue
                }
                var status: Int32 = 0
                if waitpid(member.pid, &status, WNOHANG) != member.pid { pending = true }
            }
            if kill(-group, 0) != 0 && errno == ESRCH { return true }
            return !pending
        }

        /// Checks `condition` every 50 ms until it holds (true) or `seconds` passed (false).
        static func poll(for seconds: Double, until condition: () -> Bool) async throws -> Bool {
            let deadline = ContinuousClock.now + .seconds(seconds)
            while true {
                if condition() { return true }
                if ContinuousClock.now >= deadline { return false }
                try await Task.sleep(for: .milliseconds(50))
            }
        }

        // MARK: list

        public func list() async throws -> [AgentHandle] {
            let directory = configuration.stateDirectory
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
            var handles: [AgentHandle] = []
            for name in names.sorted() where name.hasSuffix(".json") {
                if let handle = try handle(recordedAt: directory + "/" + name) { handles.append(handle) }
            }
            return handles
        }

        public func heldRunIds() async throws -> Set<String> {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: configuration.stateDirectory)) ?? []
            return Set(names.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(".json".count)) })
        }

        public func agent(ofRun runId: String) async throws -> AgentHandle? {
            try checkRunId(runId)
            let path = recordPath(runId)
            guard access(path, F_OK) == 0 else { return nil }
            return try handle(recordedAt: path)
        }

        /// The agent of the record at `path`; nil when the record says nothing was started (it is
        /// then removed) or cannot be read.
        private func handle(recordedAt path: String) throws -> AgentHandle? {
            if Self.isEmptyFile(path) {
                // Created, and the orchestrator killed before its one write: nothing was started.
                unlink(path)
                return nil
            }
            guard var record = Self.read(path) else {
                logger.warning("unreadable agent record skipped", metadata: ["file": "\(path)"])
                return nil
            }
            if record.isPending, record.exit == nil {
                guard let found = try settle(record) else { return nil }
                record = found
            }
            var handle = record.handle
            handle.wasRunning = !record.isPending && ProcessTable.isAlive(record.pid, startTime: record.startTime)
            return handle
        }

        /// Resolves a record written just before a launch whose orchestrator stopped before it could
        /// complete the record: the agent's process is found by its run id (adopted), or it ran and
        /// ended (its exit is kept), or it never started (the record is removed and nil returned, so
        /// the run may be launched).
        private func settle(_ pending: Record) throws -> Record? {
            var record = pending
            let runId = record.handle.runId
            if let leader = ProcessTable.groupLeader(withEnvironment: "AGENTJOBS_RUN_ID=" + runId) {
                record.pid = leader.pid
                record.startTime = leader.startTime
                record.handle.id = String(leader.pid)
                record.handle.processGroup = leader.pid
                logger(for: record.handle).info(
                    "found the agent of an interrupted launch", metadata: ["pid": "\(leader.pid)"])
            } else if let exit = Self.recordedExit(logDirectory: record.handle.logDirectory, pid: 0) {
                record.exit = exit
            } else {
                unlink(recordPath(runId))
                return nil
            }
            try save(record)
            return record
        }

        // MARK: release

        public func release(_ handle: AgentHandle) async throws {
            let path = recordPath(handle.runId)
            if unlink(path) != 0 && errno != ENOENT {
                throw AgentLogFiles.fileError("could not remove the agent record \(path)")
            }
        }

        // MARK: records and files

        private func recordPath(_ runId: String) -> String {
            configuration.stateDirectory + "/" + runId + ".json"
        }

        private func load(_ handle: AgentHandle) throws -> Record {
            let path = recordPath(handle.runId)
            guard FileManager.default.fileExists(atPath: path) else {
                throw OrchestratorError(
                    code: .unknownAgent, message: "no agent process of run \(handle.runId) is known on this host")
            }
            guard let record = Self.read(path) else {
                throw OrchestratorError(code: .fileSystem, message: "the agent record \(path) is unreadable")
            }
            return record
        }

        /// Reads a record. A read that overlaps the record's in-place write (``save(_:)``, from
        /// another task of the same run) may see it half done: it is read again, up to 5 times.
        private static func read(_ path: String) -> Record? {
            for attempt in 0..<5 {
                if attempt > 0 { usleep(1_000) }
                guard let data = FileManager.default.contents(atPath: path) else { return nil }
                if let record = try? JSONDecoder().decode(Record.self, from: data) { return record }
            }
            return nil
        }

        private static func isEmptyFile(_ path: String) -> Bool {
            var status = stat()
            return lstat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFREG && status.st_size == 0
        }

        /// Creates an agent's record (`O_EXCL`: a run has one agent on this host).
        /// - Throws: ``OrchestratorError`` (`alreadyLaunched`) when the run has a record already.
        private func create(_ record: Record) throws {
            let path = recordPath(record.handle.runId)
            let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else {
                if errno == EEXIST {
                    throw OrchestratorError(
                        code: .alreadyLaunched,
                        message: "run \(record.handle.runId) already has an agent process on this host (record \(path))"
                    )
                }
                throw AgentLogFiles.fileError("could not create the agent record \(path)")
            }
            defer { close(descriptor) }
            do {
                try write(record, to: descriptor, path: path, atLeast: 0)
            } catch {
                unlink(path)
                throw error
            }
        }

        /// Replaces an agent's record in place, with one `write` of at least the old length (padded
        /// with spaces, which JSON ignores): an orchestrator killed at any point leaves the old or the
        /// new record whole, without a temporary file and a rename per change. Like the rename it
        /// replaces, it is not synced: after a power loss no agent of the record is left running.
        private func save(_ record: Record) throws {
            let path = recordPath(record.handle.runId)
            let descriptor = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)
            guard descriptor >= 0 else { throw AgentLogFiles.fileError("could not open the agent record \(path)") }
            defer { close(descriptor) }
            var status = stat()
            guard fstat(descriptor, &status) == 0 else {
                throw AgentLogFiles.fileError("could not read the agent record \(path)")
            }
            try write(record, to: descriptor, path: path, atLeast: Int(status.st_size))
        }

        private func write(_ record: Record, to descriptor: Int32, path: String, atLeast length: Int) throws {
            var bytes: [UInt8]
            do {
                bytes = Array(try JSONEncoder().encode(record))
            } catch {
                throw OrchestratorError(
                    code: .fileSystem, message: "could not encode the agent record \(path)", detail: "\(error)")
            }
            if bytes.count < length { bytes += [UInt8](repeating: 0x20, count: length - bytes.count) }
            let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress!, $0.count, 0) }
            guard written == bytes.count else {
                throw AgentLogFiles.fileError("could not write the agent record \(path)")
            }
        }

        /// Creates a directory and any missing parents. One `mkdir` when only the last is missing
        /// (a run's directory) or none is (the state directory), where Foundation's looks at every
        /// component first: a twentieth of the orchestrator's CPU in a burst of launches.
        private func createDirectory(_ path: String) throws {
            if mkdir(path, 0o755) == 0 { return }
            var status = stat()
            if errno == EEXIST, stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR { return }
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw OrchestratorError(code: .fileSystem, message: "could not create \(path)", detail: "\(error)")
            }
        }

        private func logger(for handle: AgentHandle) -> Logger {
            var logger = self.logger
            logger[metadataKey: "run_id"] = "\(handle.runId)"
            logger[metadataKey: "job_id"] = "\(handle.jobId)"
            logger[metadataKey: "host_id"] = "\(handle.hostId)"
            return logger
        }
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34) and `…_addchdir_np` (2.29): declared
    /// only for `_DEFAULT_SOURCE` builds, which Swift's Glibc module is not, so they are looked up at
    /// run time. Where they are missing, agents inherit the orchestrator's working directory, and only
    /// descriptors opened with `O_CLOEXEC` (all of ours) stay out of agents.
    private enum GlibcSpawnExtensions {
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        typealias AddChdir =
            @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) ->
            Int32

        static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
            .map { unsafeBitCast($0, to: AddCloseFrom.self) }
        static let addChdir: AddChdir? = dlsym(nil, "posix_spawn_file_actions_addchdir_np")
            .map { unsafeBitCast($0, to: AddChdir.self) }
    }

    /// Rotates the output files of a process agent in place; failures are logged, not thrown: the
    /// agent keeps running and the next check tries again.
    private func rotate(_ handle: AgentHandle, policy: LogRotationPolicy, logger: Logger) {
        for path in [handle.stdoutPath, handle.stderrPath] {
            do {
                try AgentLogFiles.rotateInPlaceIfNeeded(path, policy: policy)
            } catch {
                logger.warning(
                    "could not rotate an agent output file", metadata: ["file": "\(path)", "error": "\(error)"])
            }
        }
    }

    extension Duration {
        /// The duration in seconds, as a floating-point number.
        var seconds: Double {
            let (seconds, attoseconds) = components
            return Double(seconds) + Double(attoseconds) / 1e18
        }
    }

    /// Run ids become file and container names: only letters, digits, `_`, `-` and `.` are accepted.
    func checkRunId(_ runId: String) throws {
        let allowed = runId.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == 0x5f || byte == 0x2d || byte == 0x2e
        }
        guard allowed, !runId.isEmpty, runId.utf8.count <= 128, runId.first != "." else {
            throw OrchestratorError(
                code: .invalidConfiguration, message: "run id '\(runId)' must be 1–128 letters, digits, '_', '-' or '.'"
            )
        }
    }
#endif
