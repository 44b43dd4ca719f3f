import AgentJobsCore
import Hummingbird

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// One endpoint of the HTTP API: the router is built from the list of these, and the OpenAPI test
/// checks the same list, so no route can exist without being documented.
struct APIRoute: Sendable {
    typealias Handler = @Sendable (Request, AgentJobsRequestContext) async throws -> Response

    var method: HTTPRequest.Method
    /// The path in the router's syntax, e.g. `/api/v1/jobs/:id`.
    var path: String
    var access: Access
    var handler: Handler

    init(_ method: HTTPRequest.Method, _ path: String, _ access: Access, _ handler: @escaping Handler) {
        self.method = method
        self.path = path
        self.access = access
        self.handler = handler
    }

    /// The path in OpenAPI's syntax, e.g. `/api/v1/jobs/{id}`.
    var openAPIPath: String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            segment.hasPrefix(":") ? "{\(segment.dropFirst())}" : String(segment)
        }.joined(separator: "/")
    }
}

/// Reads query parameters, refusing unknown ones so that a typo in a filter is not silently ignored,
/// and repeated ones (`?status=failed&status=queued`), which no parameter of the API takes.
struct QueryReader {
    private let values: [String: String]

    init(_ request: Request, allowed: Set<String>) throws {
        var values: [String: String] = [:]
        for (name, value) in Self.parameters(of: request) {
            guard allowed.contains(name) else { throw ValidationErrorBox.unknownQuery(name, allowed: allowed) }
            guard values.updateValue(value, forKey: name) == nil else {
                throw ValidationError(field: name, message: "is given more than once; give it once")
            }
        }
        self.values = values
    }

    /// The query's parameters in order, each name and value decoded once: `+` is a space (form
    /// encoding, e.g. `cron=30+2+*+*+*`) and `%2B` a plus (`since=2026-12-01T00:00:00%2B01:00`).
    /// Hummingbird's `queryParameters` decodes percent-escapes before a `+` can be told from `%2B`,
    /// so the raw query is read here. A malformed escape leaves the text as it came.
    static func parameters(of request: Request) -> [(name: String, value: String)] {
        guard let query = request.uri.query, !query.isEmpty else { return [] }
        func decode(_ text: Substring) -> String {
            let spaced = text.replacingOccurrences(of: "+", with: " ")
            return spaced.removingPercentEncoding ?? spaced
        }
        return query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            guard let equals = pair.firstIndex(of: "=") else { return (decode(pair), "") }
            return (decode(pair[..<equals]), decode(pair[pair.index(after: equals)...]))
        }
    }

    /// The query parameter `name` decoded; nil when it is absent.
    /// - Throws: ``ValidationError`` naming it when it is present without a value (`?status=`):
    ///   an empty filter is more likely a script's bug than a wish for no filter.
    func string(_ name: String) throws -> String? {
        guard let string = value(name) else { return nil }
        guard !string.isEmpty else {
            throw ValidationError(field: name, message: "is empty; leave the parameter out for none")
        }
        return string
    }

    /// The query parameter `name` as an instant; nil when it is absent.
    /// - Throws: ``ValidationError`` naming it when it is not an RFC 3339 time.
    func time(_ name: String) throws -> Date? {
        guard let text = try string(name) else { return nil }
        guard let date = ISO8601.parse(text) else {
            throw ValidationError(
                field: name, message: "must be an RFC 3339 time with a zone, e.g. 2026-12-01T00:00:00Z")
        }
        return date
    }

    /// The query parameter `name` decoded, empty when it is present without a value (`?limit=`);
    /// nil when it is absent. For a number, where an empty value is not one.
    func value(_ name: String) -> String? {
        values[name]
    }
}

enum ValidationErrorBox {
    static func unknownQuery(_ name: String, allowed: Set<String>) -> ValidationError {
        ValidationError(
            field: name,
            message:
                "is not a known query parameter; known: \(allowed.isEmpty ? "none" : allowed.sorted().joined(separator: ", "))"
        )
    }
}
