import AgentJobsCore

/// Where the store lives: `sqlite:PATH` (also `sqlite://PATH`) or `postgres://…` (also
/// `postgresql://…`). The executable opens it: the PostgreSQL store is a module of its own.
public enum DatabaseURL: Sendable, Hashable, CustomStringConvertible {
    case sqlite(path: String)
    /// The URL as given (it may hold a password: print ``description``, never this).
    case postgres(url: String)

    /// Parses a database URL.
    /// - Throws: ``StoreError`` (`unavailable`) when the URL is malformed or its kind unknown.
    public init(parsing text: String) throws {
        let trimmed = text.trimmingWhitespace()
        if trimmed.hasPrefix("sqlite://") {
            self = .sqlite(path: String(trimmed.dropFirst("sqlite://".count)))
        } else if trimmed.hasPrefix("sqlite:") {
            self = .sqlite(path: String(trimmed.dropFirst("sqlite:".count)))
        } else if trimmed.hasPrefix("postgres://") || trimmed.hasPrefix("postgresql://") {
            self = .postgres(url: trimmed)
        } else {
            // Only the scheme is shown: the rest may hold a password.
            let scheme = trimmed.range(of: ":").map { String(trimmed[..<$0.lowerBound].prefix(20)) } ?? "(none)"
            throw StoreError(
                .unavailable,
                "the scheme '\(scheme)' is not a database URL's; expected sqlite:PATH or postgres://USER@HOST:PORT/DATABASE"
            )
        }
        if case .sqlite(let path) = self, path.isEmpty {
            throw StoreError(.unavailable, "the sqlite: URL has no file path")
        }
    }

    /// The URL without a password.
    public var description: String {
        switch self {
        case .sqlite(let path):
            return "sqlite:\(path)"
        case .postgres(let url):
            guard let schemeEnd = url.range(of: "://"), let at = url[schemeEnd.upperBound...].lastIndex(of: "@") else {
                return url
            }
            let user = url[schemeEnd.upperBound..<at].split(separator: ":", maxSplits: 1).first ?? ""
            return String(url[..<schemeEnd.upperBound]) + user + String(url[at...])
        }
    }
}
