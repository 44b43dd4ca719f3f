import AgentJobsCore
import AgentJobsStore
import Hummingbird

/// An error the API reports as `{"error": {"code", "message", ...}}` with a matching HTTP status.
///
/// Domain errors (``ValidationError``, ``StoreError``) are mapped here; anything else becomes a bare
/// 500 without details, so internals never leak to clients.
public struct APIError: HTTPResponseError, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// Extra string fields of the error object (`field`, `activeRunId`).
    public var details: [String: String]

    public init(_ status: HTTPResponse.Status, code: String, message: String, details: [String: String] = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var object: [String: JSONValue] = ["code": .string(code), "message": .string(message)]
        for (key, value) in details { object[key] = .string(value) }
        return try JSONResponse.make(status: status, JSONValue.object(["error": .object(object)]))
    }

    static func malformedJSON(_ detail: String) -> APIError {
        APIError(.badRequest, code: "malformed_json", message: "the request body is not valid JSON: \(detail)")
    }

    static let unauthenticated = APIError(
        .unauthorized, code: "unauthenticated",
        message:
            "missing or unknown token; send 'Authorization: Bearer <token>' (create one with 'agentjobs tokens create')"
    )

    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, code: "forbidden", message: message) }

    static func notFound(_ message: String) -> APIError { APIError(.notFound, code: "not_found", message: message) }

    /// Maps any error thrown by a handler to the API's error shape.
    static func from(_ error: any Error) -> APIError? {
        switch error {
        case let error as APIError:
            return error
        case let error as ValidationError:
            return APIError(
                .unprocessableContent, code: "validation_failed", message: error.description,
                details: ["field": error.field])
        case let error as StoreError:
            switch error.code {
            case .notFound: return APIError(.notFound, code: "not_found", message: error.message)
            case .activeRun:
                return APIError(
                    .conflict, code: "active_run", message: error.message,
                    details: ["activeRunId": error.activeRunId ?? ""])
            case .runFinished: return APIError(.conflict, code: "run_finished", message: error.message)
            case .conflict: return APIError(.conflict, code: "conflict", message: error.message)
            case .invalidRegistrationToken:
                return APIError(.unauthorized, code: "invalid_registration_token", message: error.message)
            case .unavailable:
                return APIError(
                    .serviceUnavailable, code: "unavailable", message: "the database is unavailable; try again shortly")
            case .corrupt:
                // Not the caller's fault and nothing it can fix: a bare 500 (logged by the caller).
                return nil
            }
        case is CancellationError:
            // The server cancels the requests still waiting when it stops (after its graceful
            // limit); one that wrote may have committed, as with any 503.
            return APIError(
                .serviceUnavailable, code: "unavailable", message: "the server is stopping; try again shortly")
        default:
            return nil
        }
    }
}
