import AgentJobsCore
import ArgumentParser

/// `agentjobs webhooks`: subscriptions to run ends and their deliveries (admin token).
struct WebhooksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhooks", abstract: "Subscribe URLs to run ends, and see what was delivered (admin token).",
        subcommands: [List.self, Create.self, Delete.self, Deliveries.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List webhook subscriptions (never their secrets).")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let json = try await options.client().send(.GET, "/api/v1/webhooks")
            try Output.print(
                options.output, json: json, table: WebhooksCommand.table(json["webhooks"]?.arrayValue ?? []))
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Subscribe a URL to run ends; prints the signing secret once.",
            discussion:
                "Each request carries AgentJobs-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" keyed with the secret>. See docs/webhooks.md."
        )
        @OptionGroup var options: ClientOptions
        @Option(help: "Where to POST deliveries (http:// or https://).") var url: String
        @Option(help: "run.succeeded, run.failed, run.timed_out, run.canceled or host.lost (repeat for several).")
        var event: [String] = []
        @Option(help: "Only runs of this job (id or name).") var job: String?
        @Option(help: "cloudevents (default) or slack.") var format: String?
        @Option(help: "The signing secret (16-256 characters); left out, one is generated.") var secret: String?

        func run() async throws {
            let client = try options.client()
            guard !event.isEmpty else {
                throw CLIError("pass at least one --event, e.g. --event run.failed", status: ExitStatus.usage)
            }
            var body: [String: JSONValue] = ["url": .string(url), "events": .array(event.map(JSONValue.string))]
            if let job { body["jobId"] = .string(try await client.jobId(job)) }
            if let format { body["format"] = .string(format) }
            if let secret { body["secret"] = .string(secret) }
            let json = try await client.send(.POST, "/api/v1/webhooks", body: .object(body))
            try Output.result(
                options.output, json: json,
                text: "created webhook \(Output.text(json["webhook"]?["id"])); its signing secret is shown once:\n"
                    + Output.text(json["secret"]))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a subscription and its deliveries.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Webhook id (whk_...).") var id: String

        func run() async throws {
            _ = try await options.client().send(.DELETE, "/api/v1/webhooks/\(id.urlEncoded)")
            try Output.result(
                options.output, json: JSONValue.object(["id": .string(id), "deleted": .bool(true)]),
                text: "deleted \(id)")
        }
    }

    struct Deliveries: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a subscription's deliveries, newest first: attempts and the last answer.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Webhook id (whk_...).") var id: String
        @Option(help: "Page size (1-500).") var limit: Int = 50
        @Option(help: "Continue after this cursor (printed by the previous page).") var cursor: String?

        func run() async throws {
            try await Paging.list(
                "webhooks", key: "deliveries", options: options,
                path: "/api/v1/webhooks/\(id.urlEncoded)/deliveries", filters: [], limit: limit, cursor: cursor,
                table: Self.table, invocation: "webhooks deliveries \(Output.shellQuoted(id))")
        }

        static func table(_ deliveries: [JSONValue]) -> Table {
            Table(
                headers: ["ID", "EVENT", "SUBJECT", "STATUS", "ATTEMPTS", "LAST ANSWER", "NEXT ATTEMPT"],
                rows: deliveries.map { delivery in
                    [
                        Output.text(delivery["id"]), Output.text(delivery["event"]), Output.text(delivery["subject"]),
                        Output.text(delivery["status"]), Output.text(delivery["attempts"]),
                        delivery["lastError"]?.stringValue ?? delivery["lastStatusCode"]?.stringValue ?? "-",
                        Output.shortDate(delivery["nextAttemptAt"]),
                    ]
                })
        }
    }

    static func table(_ webhooks: [JSONValue]) -> Table {
        Table(
            headers: ["ID", "URL", "EVENTS", "JOB", "FORMAT", "CREATED"],
            rows: webhooks.map { webhook in
                [
                    Output.text(webhook["id"]), Output.text(webhook["url"]),
                    webhook["events"]?.arrayValue.compactMap(\.stringValue).joined(separator: ",") ?? "-",
                    webhook["jobId"]?.stringValue ?? "every job", Output.text(webhook["format"]),
                    Output.shortDate(webhook["createdAt"]),
                ]
            })
    }
}
