import AgentJobsCore
import AgentJobsStore
import AgentJobsTestSupport
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The `agentjobs` executable running as a child process, stopped when the test ends.
final class AgentJobsProcess: @unchecked Sendable {
    let process = SpawnedProcess()
    let port: Int

    /// The built `agentjobs` binary: `AGENTJOBS_BIN`, or next to the test bundle.
    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["AGENTJOBS_BIN"] { return URL(fileURLWithPath: path) }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
            "agentjobs")
    }

    /// Starts `agentjobs dev` on a free port and waits until it listens.
    ///
    /// Every wait here polls with `Task.sleep`: a test thread blocked in `read` or `waitpid` while
    /// the 170 MB debug binary starts (seconds, cold, under load) is one of the two threads of the
    /// test process's cooperative pool, and with a few such tests starting together every other
    /// test stalls until their deadlines pass (CI lost runs to it).
    /// - Parameters:
    ///   - log: A file for its standard error (its log), else discarded.
    ///   - executable: The binary to run (a copy installed elsewhere); the built one by default.
    ///   - environment: Settings added to the test's own environment.
    init(
        dataDir: URL, log: URL? = nil, executable: URL = AgentJobsProcess.binary, environment: [String: String] = [:]
    ) async throws {
        process.executableURL = executable
        process.arguments = ["dev", "--data-dir", dataDir.path, "--http-port", "0"]
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if let log {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: log)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        let output = CollectedPipe()
        process.standardOutput = output.pipe
        try process.run()
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let port = Self.announcedPort(output.text) {
                self.port = port
                return
            }
            if output.ended { break }
            do { try await Task.sleep(for: .milliseconds(20)) } catch { break }
        }
        process.signal(SIGKILL)
        _ = await process.exit()
        throw CLIFailure(message: "agentjobs dev did not start: \(output.text)")
    }

    /// The port in `dev`'s "running at http://127.0.0.1:PORT/" line, once it is whole.
    private static func announcedPort(_ output: String) -> Int? {
        guard let range = output.range(of: "running at http://127.0.0.1:") else { return nil }
        let digits = output[range.upperBound...].prefix { $0.isNumber }
        guard output[range.upperBound...].dropFirst(digits.count).first == "/" else { return nil }
        return Int(digits)
    }

    func kill9() async {
        process.signal(SIGKILL)
        _ = await process.exit()
    }

    /// Stops the process with SIGTERM, as Ctrl-C or a service manager would. A process still running
    /// `within` seconds later is a failure, and is killed.
    func stop(within limit: TimeInterval = 20) async {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(limit)
        while process.isRunning && ContinuousClock.now < deadline {
            // Cancelled (the test's time limit): killed below rather than waited for.
            do { try await Task.sleep(for: .milliseconds(20)) } catch { break }
        }
        guard process.isRunning else { return }
        if !Task.isCancelled { Issue.record("agentjobs dev did not stop within \(Int(limit)) s of SIGTERM") }
        await kill9()
    }

    deinit {
        // A test that threw before its stop: killed (reaped at once after SIGKILL).
        if process.isRunning {
            process.signal(SIGKILL)
            process.waitUntilExit()
        }
    }
}

struct CLIFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

@Suite("Crash recovery")
struct CrashRecoveryTests {
    func request(_ method: HTTPMethod, _ url: String, token: String, body: String? = nil) async throws -> (
        UInt, JSONValue
    ) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        let json =
            bytes.readableBytes == 0
            ? JSONValue.null : try JSONDecoder().decode(JSONValue.self, from: Data(bytes.readableBytesView))
        return (response.status.code, json)
    }

    @Test("a fresh agentjobs dev logs no warning or error while it starts and idles")
    func freshStartIsQuiet() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-fresh-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dataDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let logFile = dataDir.appendingPathComponent("dev.log")
        let dev = try await AgentJobsProcess(dataDir: dataDir, log: logFile)
        // Its consumers poll several times a second: a complaint repeats within this time.
        try await Task.sleep(for: .seconds(3))
        let log = try String(contentsOf: logFile, encoding: .utf8)
        await dev.stop()
        let complaints = log.split(separator: "\n").filter { line in
            [" warning ", " error ", " critical "].contains { line.contains($0) }
        }
        #expect(complaints.isEmpty, "\(complaints.count) lines, e.g. \(complaints.prefix(3).joined(separator: "\n"))")
        #expect(log.contains("orchestrator started"))
    }

    @Test("kill -9 between requests loses no acknowledged write, and a restart reapplies no migration")
    func killNineLosesNothing() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-crash-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let first = try await AgentJobsProcess(dataDir: dataDir)
        let token = try String(contentsOf: dataDir.appendingPathComponent("admin-token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let base = "http://127.0.0.1:\(first.port)/api/v1"
        let (_, hosts) = try await request(.GET, base + "/hosts", token: token)
        guard case .array(let hostList)? = hosts["hosts"], let hostId = hostList.first?["id"]?.string else {
            Issue.record("the embedded shape should register its local host: \(hosts)")
            await first.stop()
            return
        }
        var acknowledged: [(job: String, run: String)] = []
        for index in 0..<40 {
            let body =
                #"{"name":"job-\#(index)","hostId":"\#(hostId)","agentType":"datahealth","parameters":{"fileName":"sleep-300"}}"#
            let (created, job) = try await request(.POST, base + "/jobs", token: token, body: body)
            #expect(created == 201)
            let jobId = try #require(job["id"]?.string)
            let (queued, run) = try await request(.POST, base + "/jobs/\(jobId)/runs", token: token)
            #expect(queued == 201)
            acknowledged.append((jobId, try #require(run["id"]?.string)))
        }
        await first.kill9()

        let second = try await AgentJobsProcess(dataDir: dataDir)
        let restarted = "http://127.0.0.1:\(second.port)/api/v1"
        for (jobId, runId) in acknowledged {
            let (jobStatus, job) = try await request(.GET, restarted + "/jobs/\(jobId)", token: token)
            #expect(jobStatus == 200)
            #expect(job["lastRun"]?["id"]?.string == runId)
            let (runStatus, run) = try await request(.GET, restarted + "/runs/\(runId)", token: token)
            #expect(runStatus == 200)
            // The local orchestrator runs the agent (a long sleep): the run is active either way.
            #expect(["queued", "running"].contains(run["status"]?.string), "\(run)")
        }
        let (conflict, _) = try await request(.POST, restarted + "/jobs/\(acknowledged[0].job)/runs", token: token)
        #expect(conflict == 409)
        // Cancel every run through the restarted system: no agent outlives the test.
        for (_, runId) in acknowledged {
            let (status, _) = try await request(.POST, restarted + "/runs/\(runId)/cancel", token: token)
            #expect(status == 202)
        }
        try await waitUntil(acknowledged.map(\.run), base: restarted, token: token, are: ["canceled"])
        await second.stop()

        let store = try SQLiteStore(path: dataDir.appendingPathComponent("agentjobs.sqlite").path)
        #expect(try await store.appliedMigrations() == Array(1...15))
        // The relay published every dispatch and cancel, including those written before the kill.
        #expect(try await store.pendingOutbox(limit: 1000).isEmpty)
        await store.close()
    }
}
