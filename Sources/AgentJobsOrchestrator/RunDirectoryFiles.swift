#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Files in a run's directory, which its agent can write (the process driver's agent runs in it, a
/// container has it as its log mount). The agent may plant symbolic links, hard links or FIFOs
/// there, aimed at the host credential, the journal or `/etc/passwd`, so the orchestrator never
/// follows a link it finds there: every file is opened with `O_NOFOLLOW` (the last path component is
/// the only one an agent controls) and `O_NONBLOCK`, read only when it is a regular file with a
/// single link, and written only after a planted entry of any other kind was replaced.
enum RunDirectoryFiles {
    /// Whether `path` is a regular file with one link, not followed through a symbolic link.
    static func isPlainFile(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0 && isPlain(status)
    }

    /// The size of a plain file at `path`, or `nil` when there is none.
    static func size(_ path: String) -> Int? {
        var status = stat()
        guard lstat(path, &status) == 0, isPlain(status) else { return nil }
        return Int(status.st_size)
    }

    /// The last `maxBytes` (at most) of the plain file at `path`; `nil` when it is missing or is not a
    /// plain file (a link, a FIFO, a device, a directory, a file with several links).
    static func tail(_ path: String, maxBytes: Int) -> (bytes: [UInt8], truncated: Bool)? {
        // Checked before the open too: opening a device node (a container can make one) has effects.
        guard isPlainFile(path) else { return nil }
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, isPlain(status) else { return nil }
        let size = Int(status.st_size)
        let start = max(0, size - maxBytes)
        guard lseek(descriptor, off_t(start), SEEK_SET) == off_t(start) else { return nil }
        var bytes = [UInt8](repeating: 0, count: min(size, maxBytes))
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress! + filled, buffer.count - filled)
            }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            filled += count
        }
        return (Array(bytes.prefix(filled)), start > 0)
    }

    /// Opens the file at `path` for appending (`O_APPEND`), creating it 0644 when missing. An entry
    /// that is not a plain file (a planted link, FIFO or hard link) is removed first and a new file
    /// created in its place, so nothing outside the directory is ever written.
    /// - Throws: ``OrchestratorError`` (`fileSystem`) when no plain file can be opened.
    static func openForAppending(_ path: String) throws -> Int32 {
        for _ in 0..<3 {
            var existing = stat()
            if lstat(path, &existing) == 0, !isPlain(existing) {
                // Never opened: a device node, FIFO, link or hard link the agent planted.
                if unlink(path) != 0 && errno != ENOENT && rmdir(path) != 0 {
                    throw AgentLogFiles.fileError("could not remove the non-regular entry \(path)")
                }
            }
            let descriptor = open(
                path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0o644)
            if descriptor >= 0 {
                var status = stat()
                if fstat(descriptor, &status) == 0, isPlain(status) { return descriptor }
                close(descriptor)
            } else if errno != ELOOP && errno != ENXIO && errno != EISDIR && errno != EWOULDBLOCK {
                throw AgentLogFiles.fileError("could not open \(path)")
            }
            // Something the agent planted: take it away (the link itself, never its target).
            if unlink(path) != 0 && errno != ENOENT && rmdir(path) != 0 {
                throw AgentLogFiles.fileError("could not remove the non-regular entry \(path)")
            }
        }
        throw OrchestratorError(
            code: .fileSystem, message: "\(path) keeps being replaced by something that is not a plain file")
    }

    /// Empties the plain file at `path` in place; does nothing to anything else.
    /// - Throws: ``OrchestratorError`` (`fileSystem`) when a plain file cannot be truncated.
    static func truncate(_ path: String) throws {
        guard isPlainFile(path) else { return }
        let descriptor = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, isPlain(status) else { return }
        guard ftruncate(descriptor, 0) == 0 else { throw AgentLogFiles.fileError("could not truncate \(path)") }
    }

    /// Removes the directory at `path` with everything in it, never following a link: each entry is
    /// unlinked, or opened relative to its directory with `O_NOFOLLOW | O_DIRECTORY` and emptied
    /// first, so a symbolic link an agent planted is removed itself, not what it points at, even if
    /// it is swapped in meanwhile. Nothing outside the directory is touched. A missing directory is
    /// not an error.
    /// - Throws: ``OrchestratorError`` (`fileSystem`) naming the first entry that could not be
    ///   removed (not owned by the orchestrator's user, or nested deeper than `maxDepth`); what was
    ///   removed before stays removed.
    static func removeTree(_ path: String, maxDepth: Int = 64) throws {
        let separator = path.lastIndex(of: "/")
        let parentPath = separator.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = separator.map { String(path[path.index(after: $0)...]) } ?? path
        let parent = open(parentPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parent >= 0 else {
            if errno == ENOENT { return }
            throw AgentLogFiles.fileError("could not open \(parentPath)")
        }
        defer { close(parent) }
        try removeEntry(Array(name.utf8CString), in: parent, path: path, depthLeft: maxDepth)
    }

    /// Removes `name` (NUL-terminated bytes, as the directory holds them) from the open directory
    /// `directory`; a directory is emptied first.
    private static func removeEntry(_ name: [CChar], in directory: Int32, path: String, depthLeft: Int) throws {
        if unlinkat(directory, name, 0) == 0 || errno == ENOENT { return }
        // Linux answers EISDIR for a directory (POSIX allows EPERM).
        guard errno == EISDIR || errno == EPERM else { throw AgentLogFiles.fileError("could not remove \(path)") }
        guard depthLeft > 0 else {
            throw OrchestratorError(code: .fileSystem, message: "\(path) is nested too deep to remove")
        }
        let child = openat(directory, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard child >= 0 else {
            if errno == ENOENT { return }
            throw AgentLogFiles.fileError("could not open \(path)")
        }
        guard let stream = fdopendir(child) else {
            close(child)
            throw AgentLogFiles.fileError("could not list \(path)")
        }
        defer { closedir(stream) }
        var entries: [[CChar]] = []
        while let entry = readdir(stream) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                Array(bytes.bindMemory(to: CChar.self).prefix { $0 != 0 }) + [0]
            }
            if entryName == [46, 0] || entryName == [46, 46, 0] { continue }
            entries.append(entryName)
        }
        for entry in entries {
            let display = String(decoding: entry.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            try removeEntry(entry, in: child, path: path + "/" + display, depthLeft: depthLeft - 1)
        }
        if unlinkat(directory, name, AT_REMOVEDIR) != 0 && errno != ENOENT {
            throw AgentLogFiles.fileError("could not remove \(path)")
        }
    }

    static func isPlain(_ status: stat) -> Bool {
        status.st_mode & S_IFMT == S_IFREG && status.st_nlink == 1
    }
}
