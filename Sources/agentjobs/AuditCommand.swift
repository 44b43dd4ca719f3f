import AgentJobsCore
import ArgumentParser

/// `agentjobs audit list`: who changed what through the API (admin token).
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Read the audit log: every change made through the API, and by whom.",
        subcommands: [List.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List audit entries, newest first (admin token).")
        @OptionGroup var options: ClientOptions
        @Option(help: "Only changes to this kind: job, run, api_token, registration_token, host or webhook.") var kind:
            String?
        @Option(help: "Only this action, e.g. job.updated or run.cancel_requested.") var action: String?
        @Option(help: "Only changes by this API token or host id.") var actor: String?
        @Option(help: "Only changes to this job, run, token or host id.") var target: String?
        @Option(help: "Page size (1-500).") var limit: Int = 50
        @Option(help: "Continue after this cursor (printed by the previous page).") var cursor: String?

        func run() async throws {
            let filters = [
                ("kind", "--kind", kind), ("action", "--action", action), ("actorId", "--actor", actor),
                ("targetId", "--target", target),
            ]
            try await Paging.list(
                "audit", key: "entries", options: options, path: "/api/v1/audit", filters: filters, limit: limit,
                cursor: cursor, table: Self.table)
        }

        static func table(_ entries: [JSONValue]) -> Table {
            Table(
                headers: ["TIME", "ACTION", "BY", "TARGET", "SUMMARY"],
                rows: entries.map { entry in
                    let target = entry["target"]
                    let name = target?["name"]?.stringValue.map { " (\($0))" } ?? ""
                    return [
                        Output.shortDate(entry["at"]), Output.text(entry["action"]), actorText(entry["actor"]),
                        Output.text(target?["id"]) + name, Output.text(entry["summary"]),
                    ]
                })
        }

        /// `token tok_… (ci-bot)`, `host host_… (db-1)`, or `unknown` for a command without a token.
        static func actorText(_ actor: JSONValue?) -> String {
            guard let actor, let kind = actor["kind"]?.stringValue else { return "unknown" }
            guard let id = actor["id"]?.stringValue else { return kind }
            return "\(kind) \(id)" + (actor["name"]?.stringValue.map { " (\($0))" } ?? "")
        }
    }
}
