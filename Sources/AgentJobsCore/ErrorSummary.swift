/// Builds the error summary shown for a run that did not succeed: short enough to travel in an event
/// and fit one screen, specific enough to say why the run failed, and pointing at the full logs,
/// which never leave the host.
public enum ErrorSummary {
    /// The largest summary, in UTF-8 bytes.
    public static let maxBytes = 4096
    /// Appended when a summary is cut; the cut keeps whole characters.
    public static let truncationMarker = "\n… [truncated; the full logs are on the host]"
    /// At most this many distinct error lines are listed per failed connection.
    public static let maxLinesPerConnection = 5

    /// A `lineage-plus` connection that failed, with what its log on the host says.
    public struct FailedConnection: Sendable, Hashable {
        public var name: String
        /// The connection's log lines (all of them, or its error lines; non-error lines are skipped).
        public var logLines: [String]
        /// Where the connection's full log is, on the host.
        public var logPath: String

        public init(name: String, logLines: [String], logPath: String) {
            self.name = name
            self.logLines = logLines
            self.logPath = logPath
        }
    }

    /// An error line and how often it (or a line differing only in timestamps and ids) occurred.
    public struct CountedLine: Sendable, Hashable {
        public var line: String
        public var count: Int

        public init(line: String, count: Int) {
            self.line = line
            self.count = count
        }
    }

    /// The summary of a failed `lineage-plus` run: for each failed connection its name, its most
    /// frequent distinct error lines and the path of its log on the host.
    public static func forFailedConnections(_ connections: [FailedConnection], totalConnections: Int? = nil) -> String {
        var text = ""
        if let totalConnections {
            text +=
                "\(connections.count) of \(totalConnections) connection\(totalConnections == 1 ? "" : "s") failed.\n"
        } else {
            text += "\(connections.count) connection\(connections.count == 1 ? "" : "s") failed.\n"
        }
        for connection in connections {
            text += "\nConnection \"\(connection.name)\" — log on host: \(connection.logPath)\n"
            let top = topErrorLines(connection.logLines)
            if top.isEmpty {
                text += "  (no error lines in its log)\n"
            }
            for entry in top {
                text += "  " + entry.line + (entry.count > 1 ? "  (×\(entry.count))" : "") + "\n"
            }
        }
        return capped(trimTrailingNewlines(text))
    }

    /// The summary of any other failure: the agent's own error message, or else the last lines of its output.
    /// - Parameters:
    ///   - agentMessage: The agent's termination message or last error line, if it gave one.
    ///   - lastOutputLines: The tail of the agent's output, used when there is no message.
    ///   - logPath: Where the full output is, on the host.
    public static func forAgentFailure(agentMessage: String?, lastOutputLines: [String], logPath: String?) -> String {
        var text: String
        if let message = agentMessage.map({ $0.trimmingWhitespace() }), !message.isEmpty {
            text = message
        } else if !lastOutputLines.isEmpty {
            text = "Last lines of output:\n" + lastOutputLines.joined(separator: "\n")
        } else {
            text = "The agent produced no output."
        }
        if let logPath { text += "\nFull output on host: \(logPath)" }
        return capped(text)
    }

    /// The most frequent distinct error lines: lines that differ only in timestamps, numbers and
    /// ids count as one; ties keep the order of first appearance.
    public static func topErrorLines(_ lines: [String], limit: Int = maxLinesPerConnection) -> [CountedLine] {
        var order: [String] = []
        var entries: [String: CountedLine] = [:]
        for raw in lines {
            let line = raw.trimmingWhitespace()
            guard isErrorLine(line) else { continue }
            let key = normalize(line)
            if entries[key] == nil {
                order.append(key)
                entries[key] = CountedLine(line: stripLeadingTimestamp(line), count: 0)
            }
            entries[key]!.count += 1
        }
        let ranked = order.enumerated().sorted { lhs, rhs in
            let left = entries[lhs.element]!.count
            let right = entries[rhs.element]!.count
            return left != right ? left > right : lhs.offset < rhs.offset
        }
        return ranked.prefix(limit).map { entries[$0.element]! }
    }

    /// Whether a log line reports an error.
    public static func isErrorLine(_ line: String) -> Bool {
        guard !line.isEmpty else { return false }
        let lower = line.lowercased()
        return lower.contains("error") || lower.contains("fatal") || lower.contains("exception")
            || lower.contains("critical") || lower.contains("failed")
    }

    /// The dedup key of a line: runs of digits, and hexadecimal words with a digit that are long
    /// enough to be ids (UUIDs, hashes), become `#`; whitespace is collapsed.
    public static func normalize(_ line: String) -> String {
        var output = ""
        var word = ""
        func flush() {
            guard !word.isEmpty else { return }
            let hasDigit = word.contains(where: \.isNumber)
            let allDigits = word.allSatisfy(\.isNumber)
            output += (allDigits || (hasDigit && word.count >= 8)) ? "#" : word
            word = ""
        }
        var lastWasSpace = false
        for character in line {
            if character.isHexDigit {
                word.append(character)
                lastWasSpace = false
                continue
            }
            flush()
            if character.isWhitespace {
                if !lastWasSpace { output.append(" ") }
                lastWasSpace = true
            } else {
                output.append(character)
                lastWasSpace = false
            }
        }
        flush()
        // "#-#-#" (UUIDs, dates) and "#:#:#.#" (times) collapse further so formats don't matter.
        var collapsed = ""
        var previous: Character?
        for character in output {
            if character == "#", let previous, previous == "#" { continue }
            if let last = collapsed.last, last == "#", "-:.T+Z".contains(character) {
                previous = character
                collapsed.append(character)
                continue
            }
            collapsed.append(character)
            previous = character
        }
        return collapsed.replacing("#-#", with: "#").replacing("#:#", with: "#").replacing("#.#", with: "#")
    }

    /// Removes a leading ISO-8601-like timestamp (and the separator after it) from a display line.
    static func stripLeadingTimestamp(_ line: String) -> String {
        let scalars = Array(line)
        guard scalars.count > 19, scalars[0].isNumber, scalars[4] == "-", scalars[7] == "-" else { return line }
        var index = 10
        while index < scalars.count, !scalars[index].isWhitespace || index < 19 { index += 1 }
        let rest = String(scalars[index...]).trimmingWhitespace()
        return rest.isEmpty ? line : rest
    }

    /// Cuts text to ``maxBytes`` of UTF-8 on a character boundary, with ``truncationMarker`` when cut.
    public static func capped(_ text: String, maxBytes: Int = maxBytes) -> String {
        guard text.utf8.count > maxBytes else { return text }
        let budget = maxBytes - truncationMarker.utf8.count
        var result = ""
        var used = 0
        for character in text {
            let size = character.utf8.count
            if used + size > budget { break }
            result.append(character)
            used += size
        }
        return result + truncationMarker
    }

    private static func trimTrailingNewlines(_ text: String) -> String {
        var text = Substring(text)
        while text.last == "\n" { text.removeLast() }
        return String(text)
    }
}
