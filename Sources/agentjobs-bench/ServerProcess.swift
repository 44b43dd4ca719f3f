import Foundation

/// `agentjobs dev` (or `agentjobs serve`) running as a child process on a free port.
///
/// `Process` is not `Sendable`; this wrapper only touches it from the benchmark's sequential flow
/// (start, read `pid`, stop), which is what makes the unchecked conformance sound.
final class ServerProcess: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    private let process: Process
    let binary: URL
    let port: Int
    var pid: Int32 { process.processIdentifier }

    private init(process: Process, binary: URL, port: Int) {
        self.process = process
        self.binary = binary
        self.port = port
    }

    /// The `agentjobs` binary to start: `AGENTJOBS_BIN`, else the one next to this executable.
    /// - Throws: ``Failure`` when there is none, saying how to build it.
    static func locateBinary() throws -> URL {
        if let path = ProcessInfo.processInfo.environment["AGENTJOBS_BIN"], !path.isEmpty {
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw Failure(message: "AGENTJOBS_BIN=\(path) is not an executable file")
            }
            return URL(fileURLWithPath: path)
        }
        var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()]
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: executable))
        }
        for candidate in candidates {
            let binary = candidate.deletingLastPathComponent().appendingPathComponent("agentjobs")
            if FileManager.default.isExecutableFile(atPath: binary.path) { return binary }
        }
        throw Failure(
            message: """
                no agentjobs binary next to \(candidates[0].path); build it with \
                `swift build -c release --product agentjobs` or set AGENTJOBS_BIN
                """)
    }

    /// Starts `agentjobs dev --data-dir <dataDir> --http-port 0` and waits until it prints its port.
    /// Its stderr goes to `logFile`.
    /// - Throws: ``Failure`` when it does not start within `timeout`.
    static func start(
        binary: URL, dataDir: URL, logFile: URL, environment: [String: String] = [:], timeout: Duration = .seconds(60)
    ) async throws -> ServerProcess {
        let process = Process()
        process.executableURL = binary
        process.arguments = ["dev", "--data-dir", dataDir.path, "--http-port", "0"]
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let output = Pipe()
        process.standardOutput = output
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        process.standardError = log
        try process.run()
        try? log.close()

        let reader = output.fileHandleForReading
        let port: Int? = await withTaskGroup(of: Int?.self) { group in
            group.addTask { try? await offPool { readPort(from: reader) } }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            // Either the port is known or the server is given up: in both cases the timer is moot,
            // and a stuck reader is released by terminating the child (its stdout closes).
            group.cancelAll()
            if first == nil, process.isRunning { process.terminate() }
            return first
        }
        guard let port else {
            await stop(process)
            let log = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
            throw Failure(message: "agentjobs dev did not start; its log ends with:\n" + log.suffix(2_000))
        }
        return ServerProcess(process: process, binary: binary, port: port)
    }

    /// Starts `agentjobs serve` with `environment` (its database, Kafka brokers, data dir, signing
    /// key file and `AGENTJOBS_HTTP_ADDRESS=127.0.0.1:0`) and waits until it logs the address it
    /// listens on (`address=127.0.0.1:PORT`). Its stdout and stderr go to `logFile`.
    /// - Throws: ``Failure`` with the end of its log when it exits or does not listen within `timeout`.
    static func startServe(
        binary: URL, environment: [String: String], logFile: URL, timeout: Duration = .seconds(120)
    ) async throws -> ServerProcess {
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve"]
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try? log.close()

        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            let text = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
            if let port = listeningPort(in: text) {
                return ServerProcess(process: process, binary: binary, port: port)
            }
            guard process.isRunning else { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let reason = process.isRunning ? "did not listen within \(timeout)" : "exited"
        await stop(process)
        let text = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
        throw Failure(message: "agentjobs serve \(reason); its log ends with:\n" + text.suffix(2_000))
    }

    /// The port of the first `address=127.0.0.1:PORT` in `log` with a port other than 0 (the
    /// configured address may be logged before the bound one).
    private static func listeningPort(in log: String) -> Int? {
        var rest = log[...]
        while let range = rest.range(of: "address=127.0.0.1:") {
            rest = rest[range.upperBound...]
            let digits = rest.prefix { $0.isNumber }
            // A number the log has not finished writing yet is followed by nothing.
            if !rest.dropFirst(digits.count).isEmpty, let port = Int(digits), port > 0 { return port }
        }
        return nil
    }

    /// Reads the child's stdout until the "running at http://127.0.0.1:PORT/" banner, then keeps
    /// draining it on a background thread so that the child never blocks on a full pipe.
    private static func readPort(from reader: FileHandle) -> Int? {
        var seen = ""
        while true {
            let chunk = reader.availableData
            if chunk.isEmpty { return nil }
            seen += String(decoding: chunk, as: UTF8.self)
            if let range = seen.range(of: "running at http://127.0.0.1:") {
                let digits = seen[range.upperBound...].prefix { $0.isNumber }
                if let port = Int(digits), seen[range.upperBound...].dropFirst(digits.count).first == "/" {
                    DispatchQueue.global().async {
                        while !reader.availableData.isEmpty {}
                    }
                    return port
                }
            }
        }
    }

    /// Stops the server with SIGTERM (graceful: it drains and closes the store), then SIGKILL if
    /// it has not exited within `grace`.
    func stop(grace: Duration = .seconds(20)) async {
        await Self.stop(process, grace: grace)
    }

    var exitStatus: Int32? { process.isRunning ? nil : process.terminationStatus }

    private static func stop(_ process: Process, grace: Duration = .seconds(20)) async {
        guard process.isRunning else { return }
        process.terminate()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: grace)
        while process.isRunning, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        }
    }
}
