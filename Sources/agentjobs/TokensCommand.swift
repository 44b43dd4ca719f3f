import AgentJobsCore
import AgentJobsStore
import ArgumentParser
import Foundation

/// `agentjobs tokens`: API tokens, managed directly on the database (that is how the first admin
/// token of a deployment is made).
struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens", abstract: "Create, list and revoke API tokens (directly on the database).",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token; prints the secret alone on the last line.")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "read, write or admin.") var scope: String
        @Option(help: "A name to recognise the token by.") var name: String = "cli"
        @Option(name: [.short, .long], help: "table or json.") var output: OutputFormat = .table

        func run() async throws {
            guard let scope = TokenScope(rawValue: scope) else {
                throw CLIError("--scope must be read, write or admin")
            }
            let store = try await database.store()
            let (token, secret) = try await store.createAPIToken(name: name, scope: scope, now: Date())
            if output == .json {
                let json: JSONValue = .object([
                    "id": .string(token.id), "name": .string(token.name), "scope": .string(scope.rawValue),
                    "token": .string(secret.value),
                ])
                print(try Output.encoded(json, pretty: true))
                return
            }
            print("created token \(token.id) (\(scope.rawValue)); it is shown once:")
            print(secret.value)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (without their secrets).")
        @OptionGroup var database: DatabaseOptions
        @Option(name: [.short, .long], help: "table or json.") var output: OutputFormat = .table

        func run() async throws {
            let tokens = try await database.store().listAPITokens()
            try Output.print(
                output, json: tokens,
                table: Table(
                    headers: ["ID", "NAME", "SCOPE", "CREATED", "REVOKED"],
                    rows: tokens.map {
                        [
                            $0.id, $0.name, $0.scope.rawValue, Output.date($0.createdAt),
                            $0.revokedAt.map(Output.date) ?? "-",
                        ]
                    }))
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by id.")
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "The token id (tok_...).") var id: String
        @Option(name: [.short, .long], help: "table or json.") var output: OutputFormat = .table

        func run() async throws {
            do {
                let token = try await database.store().revokeAPIToken(id: id, now: Date())
                try Output.result(output, json: token, text: "revoked \(token.id) (\(token.name))")
            } catch let error as StoreError {
                throw CLIError(
                    error.message, status: error.code == .notFound ? ExitStatus.notFound : ExitStatus.failure)
            }
        }
    }
}
