import AgentJobsCore
import Hummingbird

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
    private let request: Request
    private let allowed: Set<String>

    init(_ request: Request, allowed: Set<String>) throws {
        self.request = request
        self.allowed = allowed
        var seen: Set<String> = []
        for (name, _) in request.uri.queryParameters {
            let name = String(name)
            guard allowed.contains(name) else { throw ValidationErrorBox.unknownQuery(name, allowed: allowed) }
            guard seen.insert(name).inserted else {
                throw ValidationError(field: name, message: "is given more than once; give it once")
            }
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

    /// The query parameter `name` decoded, empty when it is present without a value (`?limit=`);
    /// nil when it is absent. For a number, where an empty value is not one.
    func value(_ name: String) -> String? {
        guard let value = request.uri.queryParameters[name[...]] else { return nil }
        // Form encoding writes spaces as '+' (e.g. cron=30+2+*+*+*).
        let raw = String(value).replacingOccurrences(of: "+", with: " ")
        return raw.removingPercentEncoding ?? raw
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
