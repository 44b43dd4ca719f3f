import Foundation
import Synchronization

/// A child process started with `posix_spawn`, with the part of `Foundation.Process`'s interface the
/// tests use.
///
/// Not `Process`: on Linux its `run()` looks for the highest open descriptor by copying 256 bytes of
/// each `/proc/self/fd` entry, past the end of a short entry, and crashes the whole test process when
/// that runs into an unmapped page (swift-corelibs-foundation#5472, fixed after the toolchain here).
/// CI lost complete runs to it (`Bad pointer dereference` in `__memmove_avx_unaligned_erms` under
/// `Process.run()`). Here the child closes every descriptor above 2 itself
/// (`posix_spawn_file_actions_addclosefrom_np`), as the orchestrator's process driver does.
public final class SpawnedProcess: @unchecked Sendable {
    public var executableURL: URL?
    public var arguments: [String] = []
    /// The child's environment; this process's when nil.
    public var environment: [String: String]?
    /// A `Pipe` or a `FileHandle` (`FileHandle.nullDevice` for /dev/null); this process's own when nil.
    public var standardInput: Any?
    public var standardOutput: Any?
    public var standardError: Any?

    private struct State {
        var pid: pid_t = 0
        /// The wait status once the child has been reaped.
        var status: Int32?
    }
    private let state = Mutex(State())

    public init() {}

    /// Starts the child.
    /// - Throws: ``ChildProcessError`` when it cannot be started (an executable that does not exist).
    public func run() throws {
        // The child holds its own copies once started: the parent's ends would keep a reader from
        // seeing EOF. Closed when the start fails too, so a reader of the pipe sees it end.
        defer {
            for (channel, isInput) in [(standardInput, true), (standardOutput, false), (standardError, false)] {
                guard let pipe = channel as? Pipe else { continue }
                try? (isInput ? pipe.fileHandleForReading : pipe.fileHandleForWriting).close()
            }
        }
        guard let path = executableURL?.path else { throw ChildProcessError(message: "no executable to run") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (channel, target) in [(standardInput, Int32(0)), (standardOutput, 1), (standardError, 2)] {
            switch channel {
            case let pipe as Pipe:
                let end = target == 0 ? pipe.fileHandleForReading : pipe.fileHandleForWriting
                posix_spawn_file_actions_adddup2(&actions, end.fileDescriptor, target)
            case let handle as FileHandle where handle.fileDescriptor >= 0:
                posix_spawn_file_actions_adddup2(&actions, handle.fileDescriptor, target)
            case is FileHandle:  // FileHandle.nullDevice has no descriptor of its own
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            default:
                break
            }
        }
        if let addCloseFrom = Self.addCloseFrom { _ = addCloseFrom(&actions, 3) }
        // The child starts with default signal handling and nothing blocked, whatever the spawning
        // thread has: a blocked SIGTERM would be inherited and the child could not be stopped.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let environment = (self.environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let argv = ([path] + arguments).map { strdup($0) }
        let envp = environment.map { strdup($0) }
        defer { for pointer in argv + envp { free(pointer) } }
        var pid = pid_t()
        let result = posix_spawn(&pid, path, &actions, &attributes, argv + [nil], envp + [nil])
        guard result == 0 else {
            throw ChildProcessError(message: "cannot start \(path): \(String(cString: strerror(result)))")
        }
        state.withLock { $0.pid = pid }
    }

    public var processIdentifier: Int32 { state.withLock { $0.pid } }

    public var isRunning: Bool { reap() == nil }

    /// The exit code, or the signal that ended the child (as `Process` reports them); 0 while running.
    public var terminationStatus: Int32 {
        guard let status = reap() else { return 0 }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : status & 0x7f
    }

    /// Sends SIGTERM.
    public func terminate() { signal(SIGTERM) }

    /// Sends `signal` while the child has not been reaped (its pid cannot belong to another process).
    public func signal(_ signal: Int32) {
        state.withLock { state in
            if state.pid > 0, state.status == nil { _ = kill(state.pid, signal) }
        }
    }

    /// Blocks the calling thread until the child has exited.
    public func waitUntilExit() {
        while reap() == nil { usleep(5_000) }
    }

    /// Waits, without blocking a thread, until the child has exited, and returns ``terminationStatus``.
    /// A cancelled wait (a test's time limit) kills the child and waits only for that: a sleep in a
    /// cancelled task returns at once, and the wait would spin on a thread for as long as it runs.
    public func exit() async -> Int32 {
        while reap() == nil {
            do {
                try await Task.sleep(for: .milliseconds(10))
            } catch {
                signal(SIGKILL)
                while reap() == nil { usleep(1_000) }
            }
        }
        return terminationStatus
    }

    /// The wait status once the child has exited (reaping it the first time), else nil. Under the
    /// lock, so that only one caller reaps and a signal is never sent to a reaped pid.
    private func reap() -> Int32? {
        state.withLock { state in
            if let status = state.status { return status }
            guard state.pid > 0 else { return nil }
            var status: Int32 = 0
            let result = waitpid(state.pid, &status, WNOHANG)
            if result == state.pid {
                state.status = status
            } else if result < 0 && errno == ECHILD {
                state.status = 0x7f  // reaped elsewhere: gone, status unknown
            }
            return state.status
        }
    }

    deinit {
        // Last resort for a test that dropped a running child.
        if isRunning { signal(SIGKILL) }
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34), declared only for `_DEFAULT_SOURCE`
    /// builds, which Swift's Glibc module is not: looked up at run time.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }
}
