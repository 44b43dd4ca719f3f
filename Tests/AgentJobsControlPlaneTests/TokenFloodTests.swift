import AgentJobsCore
import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// Unknown bearer tokens cost bounded memory: the token cache is keyed by hash and keeps unknown
/// tokens only in a small set.
extension CrashRecoveryTests {
    @Test("60,000 requests with random 8 KB bearer tokens are refused and grow the server by less than 50 MB")
    func randomTokenFlood() async throws {
        let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agentjobs-flood-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let server = try await AgentJobsProcess(dataDir: dataDir)
        let url = "http://127.0.0.1:\(server.port)/api/v1/jobs"
        let pid = server.process.processIdentifier

        func flood(_ count: Int) async throws -> Int {
            try await withThrowingTaskGroup(of: Int.self) { group in
                let workers = 16
                for worker in 0..<workers {
                    group.addTask {
                        var refused = 0
                        var index = worker
                        while index < count {
                            var request = HTTPClientRequest(url: url)
                            request.headers.add(name: "Authorization", value: "Bearer " + Self.randomToken(bytes: 8192))
                            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                            _ = try await response.body.collect(upTo: 1 << 16)
                            if response.status.code == 401 { refused += 1 }
                            index += workers
                        }
                        return refused
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        // Warm up (connections, allocator arenas), then measure.
        _ = try await flood(2_000)
        let before = try #require(Self.residentBytes(pid))
        let refused = try await flood(60_000)
        let after = try #require(Self.residentBytes(pid))
        #expect(refused == 60_000)
        let growth = after - before
        print(
            "token flood: RSS \(before >> 20) MiB → \(after >> 20) MiB (+\(growth >> 20) MiB) after 60,000 random tokens"
        )
        #expect(growth < 50 << 20, "RSS grew by \(growth >> 20) MiB")
        await server.stop()
    }

    /// A token of `bytes` bytes that no other call returns: a random 128-bit head and a fixed filler
    /// (drawing every byte at random costs the test more CPU than the server spends on the request).
    static func randomToken(bytes: Int) -> String {
        let head = UUID().uuidString
        return head + String(repeating: "x", count: max(0, bytes - head.utf8.count))
    }

    /// The resident set of a process, from /proc.
    static func residentBytes(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return nil }
        return kilobytes * 1024
    }
}
