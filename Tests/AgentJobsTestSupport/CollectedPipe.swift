import Foundation
import Synchronization

/// A pipe for a child's output whose contents are collected as they arrive by a thread of its own,
/// so that a test waits for a child without blocking a thread of the cooperative pool.
///
/// Tests run on the cooperative pool, one thread per core (two in CI). A test that blocks one of
/// them while its child runs (the debug `agentjobs` binary takes seconds to start when it is cold
/// and the machine loaded) stalls every other test in the process; with a few of them at once the
/// stall reaches other tests' deadlines. Wait with ``end()`` and ``SpawnedProcess/exit()`` instead.
/// (Not `FileHandle.readabilityHandler`: on Linux it missed the end of a pipe, and a test waited
/// for ever.)
public final class CollectedPipe: @unchecked Sendable {
    /// For the child's `standardOutput` or `standardError` (``SpawnedProcess/run()`` closes the
    /// parent's write end, so the pipe ends when the child's copies close, or at once when the
    /// child could not be started).
    public let pipe = Pipe()
    private let collected = Collected()

    public init() {
        let collected = self.collected
        let reading = pipe.fileHandleForReading
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(reading.fileDescriptor, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                collected.append(Data(buffer[0..<count]))
            }
            collected.end()
        }
    }

    /// What arrived so far.
    public var data: Data { collected.state.withLock { $0.data } }
    public var text: String { String(decoding: data, as: UTF8.self) }
    /// Whether every writer has closed the pipe.
    public var ended: Bool { collected.state.withLock { $0.ended } }

    /// Waits, without blocking a thread, until every writer has closed the pipe, or the task is
    /// cancelled.
    /// - Returns: Everything written to it (so far, when cancelled).
    public func end() async -> Data {
        while !ended {
            do { try await Task.sleep(for: .milliseconds(10)) } catch { break }
        }
        return data
    }
}

private final class Collected: Sendable {
    struct State {
        var data = Data()
        var ended = false
    }
    let state = Mutex(State())

    func append(_ chunk: Data) {
        state.withLock { $0.data.append(chunk) }
    }

    func end() {
        state.withLock { $0.ended = true }
    }
}

extension SpawnedProcess {
    /// Runs the child to its end, its standard output and error collected together (its input
    /// /dev/null), without blocking a thread.
    /// - Returns: Its ``terminationStatus`` and output.
    /// - Throws: ``ChildProcessError`` when it cannot be started.
    public func runToEnd() async throws -> (status: Int32, output: Data) {
        let output = CollectedPipe()
        standardOutput = output.pipe
        standardError = output.pipe
        if standardInput == nil { standardInput = FileHandle.nullDevice }
        try run()
        let status = await exit()
        return (status, await output.end())
    }
}
