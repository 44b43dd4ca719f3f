#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Files and directories that hold secrets (tokens, host credentials, signing keys) or the database:
/// created private to their owner from the first byte, never through a symbolic link.
public enum PrivateFiles {
    /// Why a private file or directory could not be written.
    public struct Failure: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// Creates `path` (and missing parents) with mode 0700, or tightens an existing directory to 0700.
    /// - Throws: ``Failure`` when it cannot be created, is not a directory, or its mode cannot be set.
    public static func directory(_ path: String) throws {
        var parents: [String] = []
        var current = path
        while !current.isEmpty, current != "/", !exists(current) {
            parents.append(current)
            current = parent(of: current)
        }
        for directory in parents.reversed() {
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw Failure(path: directory, reason: "cannot create the directory: \(errorText())")
            }
        }
        var status = stat()
        // Followed if it is a link: an operator may have moved the data dir and linked it back.
        guard stat(path, &status) == 0 else { throw Failure(path: path, reason: errorText()) }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw Failure(path: path, reason: "exists and is not a directory")
        }
        if status.st_mode & 0o777 != 0o700, chmod(path, 0o700) != 0 {
            throw Failure(path: path, reason: "cannot set mode 0700: \(errorText())")
        }
    }

    /// Writes `contents` to `path` atomically and durably with mode 0600: a temporary file created
    /// 0600 (never through a symbolic link), written and fsynced, renamed over `path`, and the
    /// directory fsynced, so after a crash `path` holds the old or the new contents, never a mix.
    /// - Throws: ``Failure`` when any step fails; `path` is then unchanged.
    public static func write(_ contents: [UInt8], to path: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        unlink(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw Failure(path: temporary, reason: "cannot create: \(errorText())")
        }
        var closed = false
        defer {
            if !closed { close(descriptor) }
        }
        do {
            // The umask can only take bits away; set exactly 0600 whatever it is.
            guard fchmod(descriptor, 0o600) == 0 else {
                throw Failure(path: temporary, reason: "cannot set mode 0600: \(errorText())")
            }
            var written = 0
            while written < contents.count {
                let result = contents.withUnsafeBytes { bytes in
                    posixWrite(descriptor, bytes.baseAddress! + written, contents.count - written)
                }
                if result < 0 {
                    if errno == EINTR { continue }
                    throw Failure(path: temporary, reason: "cannot write: \(errorText())")
                }
                written += result
            }
            guard fsync(descriptor) == 0 else { throw Failure(path: temporary, reason: "fsync: \(errorText())") }
            closed = true
            guard close(descriptor) == 0 else { throw Failure(path: temporary, reason: "close: \(errorText())") }
            guard rename(temporary, path) == 0 else {
                throw Failure(path: path, reason: "cannot replace: \(errorText())")
            }
        } catch {
            unlink(temporary)
            throw error
        }
        // The rename itself must survive a power loss (a new run's journal record depends on it).
        let directory = open(parent(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw Failure(path: parent(of: path), reason: "cannot open: \(errorText())") }
        defer { close(directory) }
        guard fsync(directory) == 0 else { throw Failure(path: parent(of: path), reason: "fsync: \(errorText())") }
    }

    /// Creates `path` empty with mode 0600 unless it exists, and tightens an existing regular file
    /// to 0600 (the SQLite database: its WAL and shared-memory files take the database file's mode).
    /// - Throws: ``Failure`` when it cannot be created or is not a regular file.
    public static func ensurePrivate(_ path: String) throws {
        let descriptor = open(path, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw Failure(path: path, reason: "cannot open: \(errorText())") }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw Failure(path: path, reason: "is not a regular file")
        }
        if status.st_mode & 0o777 != 0o600, fchmod(descriptor, 0o600) != 0 {
            throw Failure(path: path, reason: "cannot set mode 0600: \(errorText())")
        }
    }

    /// The permission bits of `path` (not following a final symbolic link), or `nil` if it does not exist.
    public static func mode(of path: String) -> UInt32? {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        return UInt32(status.st_mode & 0o777)
    }

    private static func exists(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0
    }

    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}

/// `write(2)`, under a name the static `PrivateFiles.write` does not shadow.
private func posixWrite(_ descriptor: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, buffer, count)
}
