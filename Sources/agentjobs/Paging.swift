import AgentJobsCore

/// One page of a paged listing (`hosts list`, `jobs list`), and on a terminal table the command
/// that prints the next page, with the same filters.
enum Paging {
    /// - Parameters:
    ///   - command: The subcommand group (`hosts`, `jobs`, `runs`, `audit`): the hint is
    ///     `agentjobs <command> list …`.
    ///   - key: The answer's list (`hosts`, `jobs`, `runs`, `entries`).
    ///   - filters: (query parameter, flag, value) of each filter; nil values are left out.
    ///   - hint: A flag's value as the user gave it, when it differs from the query's (a name for an id).
    static func list(
        _ command: String, key: String, options: ClientOptions, path: String, filters: [(String, String, String?)],
        limit: Int, cursor: String?, table: ([JSONValue]) -> Table, hint: [String: String?] = [:],
        invocation: String? = nil
    ) async throws {
        var query = ["limit=\(limit)"]
        for (name, _, value) in filters {
            if let value { query.append("\(name)=\(value.urlEncoded)") }
        }
        if let cursor { query.append("cursor=\(cursor.urlEncoded)") }
        let json = try await options.client().send(.GET, path + "?" + query.joined(separator: "&"))
        try Output.print(options.output, json: json, table: table(json[key]?.arrayValue ?? []))
        guard options.output == .table, let next = json["nextCursor"]?.stringValue else { return }
        // `--name=value`: a value that starts with `-` stays the option's value.
        var arguments: [String] = []
        for (_, flag, value) in filters {
            if let value = hint[flag] ?? value { arguments.append(flag + "=" + value) }
        }
        if limit != 50 { arguments.append("--limit=\(limit)") }
        arguments.append("--cursor=" + next)
        print(
            "\nmore: agentjobs \(invocation ?? "\(command) list") "
                + arguments.map(Output.shellQuoted).joined(separator: " "))
    }
}
