import AgentJobsCore
import Testing

@Suite("Error summaries")
struct ErrorSummaryTests {
    @Test("lines that differ only in timestamps and ids count as one, most frequent first, at most five")
    func deduplicatesAndRanks() {
        var lines: [String] = []
        for index in 0..<12 {
            lines.append(
                "2026-11-29T02:0\(index % 10):11.\(100 + index)Z ERROR connection refused (request 9f8e7d6c\(index)a1b2c3d4)"
            )
        }
        lines += ["INFO all good", "ERROR table missing: orders", "ERROR table missing: orders"]
        lines += (0..<6).map { "ERROR distinct failure kind \(["a", "b", "c", "d", "e", "f"][$0])" }
        let top = ErrorSummary.topErrorLines(lines)
        #expect(top.count == 5)
        #expect(top[0].count == 12)
        #expect(top[0].line.hasPrefix("ERROR connection refused"))
        #expect(top[1] == .init(line: "ERROR table missing: orders", count: 2))
        #expect(!top.contains { $0.line.contains("INFO") })
    }

    @Test("a failed connections summary names each connection, its errors and its log path on the host")
    func connectionSummary() {
        let summary = ErrorSummary.forFailedConnections(
            [
                .init(
                    name: "warehouse", logLines: ["ERROR auth failed for user x"],
                    logPath: "/var/lib/agentjobs/runs/r/warehouse.log"),
                .init(name: "lake", logLines: [], logPath: "/var/lib/agentjobs/runs/r/lake.log"),
            ], totalConnections: 3)
        #expect(summary.contains("2 of 3 connections failed"))
        #expect(summary.contains("Connection \"warehouse\""))
        #expect(summary.contains("ERROR auth failed for user x"))
        #expect(summary.contains("/var/lib/agentjobs/runs/r/warehouse.log"))
        #expect(summary.contains("/var/lib/agentjobs/runs/r/lake.log"))
    }

    @Test("without connections the agent's message wins, else the last lines of output")
    func agentFailure() {
        #expect(
            ErrorSummary.forAgentFailure(agentMessage: "file not found: x", lastOutputLines: ["a"], logPath: nil)
                == "file not found: x")
        let tail = ErrorSummary.forAgentFailure(
            agentMessage: nil, lastOutputLines: ["one", "two"], logPath: "/p/out.log")
        #expect(tail.contains("one\ntwo"))
        #expect(tail.contains("/p/out.log"))
    }

    @Test("summaries are cut at 4096 bytes on a character boundary with a visible marker", arguments: [1, 2, 3, 4])
    func capIsUTF8Safe(width: Int) {
        let character: Character = ["a", "é", "€", "😀"][width - 1]
        let capped = ErrorSummary.capped(String(repeating: character, count: 5000))
        #expect(capped.utf8.count <= ErrorSummary.maxBytes)
        #expect(capped.hasSuffix(ErrorSummary.truncationMarker))
        #expect(capped.dropLast(ErrorSummary.truncationMarker.count).allSatisfy { $0 == character })
        #expect(ErrorSummary.capped("short") == "short")
    }

    @Test("a summary of many failing connections stays within the cap")
    func manyConnectionsStayCapped() {
        let connections = (0..<200).map { index in
            ErrorSummary.FailedConnection(
                name: "conn-\(index)",
                logLines: ["ERROR something very long went wrong \(String(repeating: "x", count: 80))"],
                logPath: "/var/lib/agentjobs/runs/run_x/connections/conn-\(index).log")
        }
        let summary = ErrorSummary.forFailedConnections(connections)
        #expect(summary.utf8.count <= ErrorSummary.maxBytes)
        #expect(summary.hasSuffix(ErrorSummary.truncationMarker))
    }
}
