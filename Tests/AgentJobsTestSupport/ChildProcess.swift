import Foundation
import Synchronization

/// A helper process started by a test (chromedriver, `agentjobs dev`), with its output captured and
/// stopped when the test ends — SIGTERM first, SIGKILL if it does not exit in time.
public final class ChildProcess: Sendable {
    public let name: String
    private let process: SpawnedProcess
    private let output = OutputBuffer()

    /// Starts `executable` with `arguments`; stdout and stderr are captured together.
    /// - Throws: when the executable cannot be started.
    public init(name: String, executable: String, arguments: [String], environment: [String: String]? = nil) throws {
        self.name = name
        let process = SpawnedProcess()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        self.process = process
        let output = self.output
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let chunk = handle.availableData
            if chunk.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            output.append(chunk)
        }
        try process.run()
    }

    public var isRunning: Bool { process.isRunning }
    public var capturedOutput: String { output.text }

    /// Waits until the output yields a value (e.g. the port a server announces).
    /// - Throws: ``ChildProcessError`` when the process exits first or `timeout` passes.
    public func waitForOutput<T: Sendable>(timeout: Duration = .seconds(30), _ parse: (String) -> T?) async throws -> T
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let value = parse(capturedOutput) { return value }
            if !process.isRunning {
                throw ChildProcessError(
                    message:
                        "\(name) exited (status \(process.terminationStatus)) before it was ready; output:\n\(capturedOutput)"
                )
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ChildProcessError(message: "\(name) was not ready after \(timeout); output:\n\(capturedOutput)")
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`.
    /// - Returns: false when SIGTERM did not stop it within `grace` (it was then killed).
    @discardableResult
    public func stop(grace: Duration = .seconds(5)) async -> Bool {
        guard process.isRunning else { return true }
        process.terminate()
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        guard process.isRunning else { return true }
        process.signal(SIGKILL)
        while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        return false
    }

    /// Kills the process at once (SIGKILL), as a crash would, and waits until it is gone.
    public func kill9() async {
        guard process.isRunning else { return }
        process.signal(SIGKILL)
        while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
    }

    /// The exit status, once the process has ended.
    public var exitStatus: Int32? { process.isRunning ? nil : process.terminationStatus }

    /// Waits until the process ends by itself (or `timeout` passes) and returns its exit status.
    /// - Throws: ``ChildProcessError`` when it is still running after `timeout` (it is then killed).
    public func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        guard !process.isRunning else {
            await kill9()
            throw ChildProcessError(message: "\(name) did not exit within \(timeout); output:\n\(capturedOutput)")
        }
        try await Task.sleep(for: .milliseconds(50))  // let the output handler drain
        return process.terminationStatus
    }

    /// The process id.
    public var pid: Int32 { process.processIdentifier }

    deinit {
        // Last resort for a test that returned without stopping its processes.
        if process.isRunning { process.signal(SIGKILL) }
    }
}

/// The captured output of a child process, bounded so a chatty process cannot grow it forever.
final class OutputBuffer: Sendable {
    private static let limit = 256 * 1024
    private let storage = Mutex<String>("")

    func append(_ chunk: Data) {
        storage.withLock { text in
            text += String(decoding: chunk, as: UTF8.self)
            if text.utf8.count > Self.limit { text = String(text.suffix(Self.limit / 2)) }
        }
    }

    var text: String { storage.withLock { $0 } }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// Finds the integer after `marker` in `text` (e.g. a port in "running at http://127.0.0.1:PORT/").
public func number(after marker: String, in text: String) -> Int? {
    guard let range = text.range(of: marker) else { return nil }
    let digits = text[range.upperBound...].prefix { $0.isNumber }
    // The number must be complete: the line continues after it.
    guard text[range.upperBound...].count > digits.count else { return nil }
    return Int(digits)
}

/// The port in the first line of `text` that contains `marker` and an address on 127.0.0.1, in
/// either log format (`address=127.0.0.1:8080` or `"address":"127.0.0.1:8080"`).
public func listeningPort(in text: String, line marker: String) -> Int? {
    for line in text.split(separator: "\n") where line.contains(marker) {
        if let port = number(after: "127.0.0.1:", in: String(line) + " ") { return port }
    }
    return nil
}
