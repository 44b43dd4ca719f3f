#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Size-based rotation of an agent's output files: keep at most ``maxFiles`` files of at most
/// ``maxFileBytes`` bytes each (`stdout.log`, then `stdout.log.1` the newest rotated one, …).
public struct LogRotationPolicy: Sendable, Hashable, Codable {
    /// The size at which a file is rotated.
    public var maxFileBytes: Int
    /// How many files are kept, counting the live one; 1 keeps no history (the file is emptied instead).
    public var maxFiles: Int

    /// Creates a policy.
    /// - Throws: ``OrchestratorError`` with ``OrchestratorError/Code-swift.struct/invalidConfiguration``
    ///   when a value is below 1.
    public init(maxFileBytes: Int = 10 * 1024 * 1024, maxFiles: Int = 5) throws {
        guard maxFileBytes >= 1, maxFiles >= 1 else {
            throw OrchestratorError(
                code: .invalidConfiguration,
                message: "log rotation needs maxFileBytes ≥ 1 and maxFiles ≥ 1 (got \(maxFileBytes) and \(maxFiles))")
        }
        self.init(checked: maxFileBytes, maxFiles)
    }

    private init(checked maxFileBytes: Int, _ maxFiles: Int) {
        self.maxFileBytes = maxFileBytes
        self.maxFiles = maxFiles
    }

    /// 5 files of 10 MiB per stream.
    public static let `default` = LogRotationPolicy(checked: 10 * 1024 * 1024, 5)

    private enum CodingKeys: String, CodingKey { case maxFileBytes, maxFiles }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            maxFileBytes: container.decodeIfPresent(Int.self, forKey: .maxFileBytes) ?? Self.default.maxFileBytes,
            maxFiles: container.decodeIfPresent(Int.self, forKey: .maxFiles) ?? Self.default.maxFiles)
    }
}

/// Names and rotation of the files an agent's output is captured in.
public enum AgentLogFiles {
    /// The agent's standard output, in the run's log directory.
    public static let stdoutName = "stdout.log"
    /// The agent's standard error, in the run's log directory.
    public static let stderrName = "stderr.log"

    /// The path of the `index`-th rotated file (0 is the live file).
    public static func path(_ path: String, rotation index: Int) -> String {
        index == 0 ? path : "\(path).\(index)"
    }

    /// Rotates a file that someone else keeps appending to (an agent process writing its own
    /// output file): when it has grown past the limit, its content is copied to the first
    /// rotated file and the file is emptied in place. The writer keeps its descriptor and, as it
    /// opened the file with `O_APPEND`, continues at the new end. Bytes written between the copy
    /// and the truncation are lost; that is the price of rotating a file without the writer's help.
    /// - Returns: Whether the file was rotated.
    /// - Throws: ``OrchestratorError`` with ``OrchestratorError/Code-swift.struct/fileSystem``.
    ///
    /// The file lives in the run directory, which the agent can write: only a plain file is rotated
    /// (``RunDirectoryFiles``), never the target of a link the agent planted.
    @discardableResult
    public static func rotateInPlaceIfNeeded(_ path: String, policy: LogRotationPolicy) throws -> Bool {
        guard let size = RunDirectoryFiles.size(path), size > policy.maxFileBytes else { return false }
        if policy.maxFiles > 1 {
            try shiftRotated(path, policy: policy)
            try copyFile(path, to: Self.path(path, rotation: 1))
        }
        try RunDirectoryFiles.truncate(path)
        return true
    }

    /// Moves `path.k` to `path.k+1` for every kept k ≥ 1 and drops the oldest, making room for a new `path.1`.
    static func shiftRotated(_ path: String, policy: LogRotationPolicy) throws {
        let oldest = Self.path(path, rotation: policy.maxFiles - 1)
        if unlink(oldest) != 0 && errno != ENOENT { throw fileError("could not remove \(oldest)") }
        var index = policy.maxFiles - 2
        while index >= 1 {
            let from = Self.path(path, rotation: index)
            if rename(from, Self.path(path, rotation: index + 1)) != 0 && errno != ENOENT {
                throw fileError("could not rename \(from)")
            }
            index -= 1
        }
    }

    private static func copyFile(_ source: String, to destination: String) throws {
        guard RunDirectoryFiles.isPlainFile(source) else { return }
        let input = open(source, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard input >= 0 else { throw fileError("could not open \(source)") }
        defer { close(input) }
        var status = stat()
        // A hard link swapped in since the check above is not copied.
        guard fstat(input, &status) == 0, RunDirectoryFiles.isPlain(status) else { return }
        // The rotated name was just freed; whatever the agent put there since is removed, not followed.
        if unlink(destination) != 0 && errno != ENOENT { throw fileError("could not remove \(destination)") }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw fileError("could not create \(destination)") }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if count == 0 { return }
            if count < 0 {
                if errno == EINTR { continue }
                throw fileError("could not read \(source)")
            }
            try buffer.withUnsafeBytes { try writeAll(output, UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        }
    }

    static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw fileError("could not write a log file")
            }
            offset += written
        }
    }

    static func fileError(_ message: String) -> OrchestratorError {
        let number = errno
        return OrchestratorError(
            code: .fileSystem, message: message, detail: "errno \(number): \(String(cString: strerror(number)))",
            errorNumber: number)
    }
}

/// Writes one output stream of an agent into its log file, rotating by size as it writes, so
/// no file exceeds the policy's limit. Used where the driver relays the output itself (the docker
/// driver copies the container's logs). One owner at a time; not thread-safe.
final class RotatingLogWriter {
    let path: String
    let policy: LogRotationPolicy
    private var descriptor: Int32
    private var size: Int

    /// Opens (appending to) the file at `path`, creating it when missing; a link or other entry the
    /// agent planted there is replaced, never followed.
    init(path: String, policy: LogRotationPolicy) throws {
        self.path = path
        self.policy = policy
        descriptor = try RunDirectoryFiles.openForAppending(path)
        var info = stat()
        size = fstat(descriptor, &info) == 0 ? Int(info.st_size) : 0
    }

    deinit { close(descriptor) }

    /// Appends bytes, rotating first whenever the live file is full.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var remaining = bytes
        while !remaining.isEmpty {
            if size >= policy.maxFileBytes { try rotate() }
            let room = policy.maxFileBytes - size
            let chunk = UnsafeRawBufferPointer(rebasing: remaining[0..<min(room, remaining.count)])
            try AgentLogFiles.writeAll(descriptor, chunk)
            size += chunk.count
            remaining = UnsafeRawBufferPointer(rebasing: remaining[chunk.count...])
        }
    }

    /// Appends bytes.
    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    private func rotate() throws {
        if policy.maxFiles > 1 {
            try AgentLogFiles.shiftRotated(path, policy: policy)
            close(descriptor)
            // Not closed again by deinit when what follows fails: the number may be another file's by then.
            descriptor = -1
            if rename(path, AgentLogFiles.path(path, rotation: 1)) != 0 {
                throw AgentLogFiles.fileError("could not rename \(path)")
            }
            descriptor = try RunDirectoryFiles.openForAppending(path)
        } else if ftruncate(descriptor, 0) != 0 {
            throw AgentLogFiles.fileError("could not truncate \(path)")
        }
        size = 0
    }
}
