#if canImport(Glibc)
    import Foundation
    import Glibc
    import Synchronization

    /// What `/proc/<pid>/stat` says about one process.
    struct ProcessTableEntry: Sendable, Hashable {
        var pid: pid_t
        /// `R`, `S`, `D`, `Z` (zombie: exited, not yet reaped by its parent), …
        var state: Character
        var parentPid: pid_t
        var processGroup: pid_t
        /// Clock ticks since boot at which the process started; with the pid it identifies a process
        /// across pid reuse.
        var startTime: UInt64

        var isZombie: Bool { state == "Z" || state == "X" }
    }

    /// Reads the kernel's process table (Linux `/proc`).
    enum ProcessTable {
        /// One process, or nil when it does not exist.
        static func entry(_ pid: pid_t) -> ProcessTableEntry? {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
            return parse(text)
        }

        /// Parses a `/proc/<pid>/stat` line. The command name is in parentheses and may itself contain
        /// spaces and parentheses, so the fields are counted from the last `)`.
        static func parse(_ line: String) -> ProcessTableEntry? {
            guard let open = line.firstIndex(of: "("), let close = line.lastIndex(of: ")"),
                let pid = pid_t(line[..<open].trimmingCharacters(in: .whitespaces))
            else { return nil }
            let fields = line[line.index(after: close)...].split(separator: " ")
            // fields[0] is field 3 (state); starttime is field 22.
            guard fields.count > 19, let state = fields[0].first, let parent = pid_t(fields[1]),
                let group = pid_t(fields[2]), let start = UInt64(fields[19])
            else { return nil }
            return ProcessTableEntry(pid: pid, state: state, parentPid: parent, processGroup: group, startTime: start)
        }

        /// Every process whose process group is `group`.
        static func members(ofGroup group: pid_t) -> [ProcessTableEntry] {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
            return names.compactMap { name in
                guard let pid = pid_t(name), let entry = entry(pid), entry.processGroup == group else { return nil }
                return entry
            }
        }

        /// The live leader of a process group (pid equal to its group) whose environment contains
        /// `variable` (`NAME=value`), e.g. the agent of one run.
        static func groupLeader(withEnvironment variable: String) -> ProcessTableEntry? {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
            let needle = Array(variable.utf8) + [0]
            for name in names {
                guard let pid = pid_t(name), let entry = entry(pid), entry.processGroup == pid, !entry.isZombie,
                    let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ")
                else { continue }
                let bytes = [UInt8](environ)
                // Entries are NUL-terminated: match whole entries only.
                var start = 0
                while start < bytes.count {
                    let end = bytes[start...].firstIndex(of: 0) ?? bytes.count
                    if bytes[start..<min(end + 1, bytes.count)].elementsEqual(needle) { return entry }
                    start = end + 1
                }
            }
            return nil
        }

        /// Whether the process `pid` that started at `startTime` still exists and has not exited.
        static func isAlive(_ pid: pid_t, startTime: UInt64) -> Bool {
            guard let entry = entry(pid), entry.startTime == startTime else { return false }
            return !entry.isZombie
        }
    }

    /// Makes this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`).
    ///
    /// When SIGKILL ends an agent's shell and its children together, the children can outlive their
    /// parent by an instant and are then re-parented. Without a subreaper they go to PID 1, which in
    /// containers and micro-VMs often never reaps them: the zombies keep the process group alive, and
    /// "nothing of the run remains" could never be confirmed. As subreaper, the orchestrator receives
    /// them and reaps those of its agents' groups (it never reaps other children: see
    /// ``ProcessDriver``).
    enum Subreaper {
        private static let done = Mutex(false)

        static func enable() {
            done.withLock { done in
                guard !done else { return }
                done = true
                // prctl(2) is variadic in C and so not imported into Swift; look the symbol up and call
                // it with its fixed-argument form, as the kernel's syscall takes five machine words.
                typealias PrctlFunction = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
                guard let symbol = dlsym(nil, "prctl") else { return }
                let prctlFunction = unsafeBitCast(symbol, to: PrctlFunction.self)
                let setChildSubreaper: Int32 = 36  // PR_SET_CHILD_SUBREAPER, <linux/prctl.h>
                _ = prctlFunction(setChildSubreaper, 1, 0, 0, 0)
            }
        }
    }

    /// Reaps the agent processes this process spawned, each on a dedicated thread blocked in
    /// `waitpid`, so that no task of the cooperative pool ever blocks on a child.
    final class ChildReaper: Sendable {
        static let shared = ChildReaper()

        private struct State {
            /// Wait statuses of reaped children (`nil`: reaped by someone else, status unknown).
            var statuses: [pid_t: Int32?] = [:]
            var watched: Set<pid_t> = []
            var waiters: [pid_t: [UInt64: CheckedContinuation<Int32?, any Error>]] = [:]
            var nextWaiter: UInt64 = 0
        }

        private let state = Mutex(State())

        /// Starts reaping a child that was just spawned.
        func watch(_ pid: pid_t) {
            state.withLock { state in
                state.statuses[pid] = nil
                state.watched.insert(pid)
            }
            let thread = Thread { [self] in
                var status: Int32 = 0
                var result: pid_t
                repeat { result = waitpid(pid, &status, 0) } while result < 0 && errno == EINTR
                deliver(pid, status: result == pid ? status : nil)
            }
            thread.name = "agentjobs-reaper-\(pid)"
            thread.stackSize = 64 * 1024
            thread.start()
        }

        /// Whether `pid` is a child this process spawned and reaps (and has not been reaped before).
        func isWatching(_ pid: pid_t) -> Bool {
            state.withLock { $0.watched.contains(pid) || $0.statuses[pid] != nil }
        }

        private func deliver(_ pid: pid_t, status: Int32?) {
            let waiters = state.withLock { state in
                state.watched.remove(pid)
                state.statuses[pid] = .some(status)
                return state.waiters.removeValue(forKey: pid).map { Array($0.values) } ?? []
            }
            for waiter in waiters { waiter.resume(returning: status) }
        }

        /// The wait status of a watched child, once it has exited.
        /// - Throws: `CancellationError` when the calling task is cancelled.
        func status(of pid: pid_t) async throws -> Int32? {
            let id = state.withLock { state in
                state.nextWaiter += 1
                return state.nextWaiter
            }
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32?, any Error>) in
                    let immediate: Result<Int32?, any Error>? = state.withLock { state in
                        if let status = state.statuses[pid] { return .success(status) }
                        if Task.isCancelled { return .failure(CancellationError()) }
                        state.waiters[pid, default: [:]][id] = continuation
                        return nil
                    }
                    if let immediate { continuation.resume(with: immediate) }
                }
            } onCancel: {
                let waiter = state.withLock { $0.waiters[pid]?.removeValue(forKey: id) }
                waiter?.resume(throwing: CancellationError())
            }
        }

        /// Splits a `waitpid` status into exit code and signal (the `WIFEXITED` family are C macros).
        static func exit(fromWaitStatus status: Int32) -> AgentExit {
            let low = status & 0x7f
            if low == 0 { return AgentExit(exitCode: (status >> 8) & 0xff) }
            return AgentExit(exitCode: 128 + low, signal: low)
        }
    }
#endif
