import Foundation

/// A throw-away Tansu broker started through deploy/testenv/tansu.sh, for tests that stop
/// and restart a broker (so they do not disturb the shared one).
public final class TansuProcess: Sendable {
    public let stateDirectory: URL
    let script: URL

    public init() {
        let repository = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        script = repository.appending(path: "deploy/testenv/tansu.sh")
        stateDirectory = FileManager.default.temporaryDirectory.appending(
            path: "agentjobs-tansu-test-\(UUID().uuidString.prefix(8))")
    }

    /// Starts (or restarts on the same port) and returns `127.0.0.1:PORT`.
    public func start() async throws -> String {
        let output = try await runScript("start")
        guard let address = output.split(separator: "\n").last.map(String.init), address.hasPrefix("127.0.0.1:") else {
            throw TansuError("tansu.sh start printed no address: \(output)")
        }
        return address
    }

    public func stop() async {
        _ = try? await runScript("stop")
    }

    /// Stops the broker and removes its state directory.
    public func tearDown() async {
        await stop()
        try? FileManager.default.removeItem(at: stateDirectory)
    }

    private func runScript(_ command: String) async throws -> String {
        let process = SpawnedProcess()
        process.executableURL = URL(filePath: "/bin/bash")
        process.arguments = [script.path(), command, stateDirectory.path()]
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.standardError
        try process.run()
        // Read to the end first (a script that writes more than a pipe holds would never exit), on
        // a thread of its own: a start takes seconds, and the tests share two pool threads.
        let data = await withCheckedContinuation { (continuation: CheckedContinuation<Data, Never>) in
            Thread.detachNewThread { continuation.resume(returning: stdout.fileHandleForReading.readDataToEndOfFile()) }
        }
        let status = await process.exit()
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard status == 0 else {
            throw TansuError("tansu.sh \(command) exited with \(status): \(text)")
        }
        return text
    }
}

/// `tansu.sh` failed.
public struct TansuError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
