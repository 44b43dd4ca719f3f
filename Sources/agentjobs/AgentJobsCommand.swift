import ArgumentParser

@main
struct AgentJobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agentjobs",
        abstract: "Run batch agent jobs across fleets of hosts.",
        discussion: """
            Server roles: dev (everything in one process, on SQLite), serve (control plane), aggregate (status
            aggregator and host tracking), orchestrate (the worker on each host).
            Client commands talk to a control plane over its API: set AGENTJOBS_URL and AGENTJOBS_TOKEN,
            or pass --url and --token.
            """,
        version: AgentJobsVersion.current,
        subcommands: [
            DevCommand.self, ServeCommand.self, AggregateCommand.self, OrchestrateCommand.self, HostCommand.self,
            TokensCommand.self, HostsCommand.self, JobsCommand.self, RunsCommand.self, AuditCommand.self,
            WebhooksCommand.self, MigrateStoreCommand.self,
        ]
    )
}
