import AgentJobsPostgres
import AgentJobsStore

/// Opens the store named by `AGENTJOBS_DATABASE_URL` (or `--database-url`): `sqlite:PATH`, or
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE?sslmode=…&pool_size=N` with the password also
/// from the file `AGENTJOBS_DATABASE_PASSWORD_FILE` names. Pending migrations are applied (on
/// PostgreSQL under an advisory lock, so replicas starting together migrate once).
/// - Throws: ``CLIError`` naming the setting, never the password.
func openStore(_ settings: Settings) async throws -> any Store {
    let text = try settings.required(
        "AGENTJOBS_DATABASE_URL",
        hint: "pass --database-url sqlite:PATH or postgres://USER@HOST/DATABASE, or set the variable")
    do {
        switch try DatabaseURL(parsing: text) {
        case .sqlite(let path):
            return try SQLiteStore(path: path)
        case .postgres(let url):
            let configuration = try PostgresStore.Configuration(
                url: url, passwordFile: settings["AGENTJOBS_DATABASE_PASSWORD_FILE"])
            return try await PostgresStore.connect(configuration, logger: makeLogger("agentjobs.store"))
        }
    } catch let error as StoreError {
        throw CLIError("\(settings.origin("AGENTJOBS_DATABASE_URL")): \(error.message)")
    }
}
