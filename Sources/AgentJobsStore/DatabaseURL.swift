import AgentJobsCore

/// Where the store lives: `sqlite:PATH` (also `sqlite://PATH`), or later `postgres://...`.
public enum DatabaseURL: Sendable, Hashable, CustomStringConvertible {
    case sqlite(path: String)

    /// Parses a database URL.
    /// - Throws: ``StoreError`` (`unavailable`) naming the setting when the URL is malformed or its kind unsupported.
    public init(parsing text: String) throws {
        let trimmed = text.trimmingWhitespace()
        if trimmed.hasPrefix("sqlite://") {
            self = .sqlite(path: String(trimmed.dropFirst("sqlite://".count)))
        } else if trimmed.hasPrefix("sqlite:") {
            self = .sqlite(path: String(trimmed.dropFirst("sqlite:".count)))
        } else if trimmed.hasPrefix("postgres://") || trimmed.hasPrefix("postgresql://") {
            throw StoreError(
                .unavailable, "AGENTJOBS_DATABASE_URL: PostgreSQL is not supported by this build yet; use sqlite:PATH")
        } else {
            throw StoreError(
                .unavailable, "AGENTJOBS_DATABASE_URL: '\(trimmed)' is not a database URL; expected sqlite:PATH")
        }
        if case .sqlite(let path) = self, path.isEmpty {
            throw StoreError(.unavailable, "AGENTJOBS_DATABASE_URL: the sqlite: URL has no file path")
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let path): return "sqlite:\(path)"
        }
    }

    /// Opens the store this URL names, applying pending migrations.
    /// - Throws: ``StoreError`` when the database cannot be opened.
    public func open() throws -> any Store {
        switch self {
        case .sqlite(let path): return try SQLiteStore(path: path)
        }
    }
}
