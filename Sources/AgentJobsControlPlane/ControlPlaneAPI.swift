import AgentJobsCore
import AgentJobsStore
import Hummingbird
import Logging

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Settings of the HTTP API.
public struct ControlPlaneConfiguration: Sendable {
    /// A host not heard from for this long is shown as offline.
    public var hostOfflineGrace: Duration
    /// How long a registration token can be used.
    public var registrationTokenLifetime: Duration
    /// The wall clock (injectable for tests).
    public var clock: @Sendable () -> Date
    /// The public half of the dispatch-signing key, handed to hosts when they register.
    public var dispatchVerifier: DispatchVerifier?
    /// What `/readyz` checks besides the database (the broker, for `serve`).
    public var readinessChecks: [ReadinessCheck] = []

    public init(
        hostOfflineGrace: Duration = .seconds(30), registrationTokenLifetime: Duration = .seconds(24 * 3600),
        clock: @escaping @Sendable () -> Date = { Date() }, dispatchVerifier: DispatchVerifier? = nil
    ) {
        self.hostOfflineGrace = hostOfflineGrace
        self.registrationTokenLifetime = registrationTokenLifetime
        self.clock = clock
        self.dispatchVerifier = dispatchVerifier
    }
}

/// The control plane's HTTP API v1: the route table and its handlers.
public struct ControlPlaneAPI: Sendable {
    let store: any Store
    let configuration: ControlPlaneConfiguration
    let authenticator: Authenticator
    let readiness: Readiness
    /// Answers the console's long polls on `GET /api/v1/runs/changes`; live while
    /// ``RunChangeFeed/follow(_:logger:)`` runs (``ControlPlaneService`` runs it).
    public let runChanges = RunChangeFeed()

    public init(store: any Store, configuration: ControlPlaneConfiguration = .init()) {
        self.store = store
        self.configuration = configuration
        self.authenticator = Authenticator(store: store)
        self.readiness = Readiness(checks: [.store(store)] + configuration.readinessChecks)
    }

    var now: Date { configuration.clock() }

    /// Every route of the API.
    var routes: [APIRoute] {
        [
            APIRoute(.get, "/healthz", .open) { _, _ in try JSONResponse.make(["status": "ok"]) },
            APIRoute(.get, "/readyz", .open) { _, _ in try await readiness.response() },
            APIRoute(.get, "/api/v1/openapi.json", .open) { _, _ in try OpenAPIDocument.response() },
        ] + tokenRoutes + hostRoutes + jobRoutes + scheduleRoutes + runRoutes + auditRoutes
            + webhookRoutes
    }

    /// Adds the API's routes to a router, each wrapped with its access check and error mapping.
    public func register(on router: Router<AgentJobsRequestContext>) {
        for route in routes {
            let authenticator = self.authenticator
            router.on(RouterPath(route.path), method: route.method) { request, context -> Response in
                do {
                    try Self.refuseControlCharacters(request, context)
                    var context = context
                    context.principal = try await authenticator.authorize(
                        request, access: route.access, hostId: context.parameters.get("id"))
                    return try await route.handler(request, context)
                } catch {
                    if let apiError = APIError.from(error) { throw apiError }
                    context.logger.error(
                        "request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
                    throw APIError(
                        .internalServerError, code: "internal", message: "internal error; see the server log")
                }
            }
        }
        registerMethodNotAllowed(on: router)
    }

    /// A method a known path does not have answers 405 with the methods it has in `Allow` (RFC 9110
    /// §15.5.6), instead of 404 as for a path that does not exist.
    private func registerMethodNotAllowed(on router: Router<AgentJobsRequestContext>) {
        let methodsByPath = Dictionary(grouping: routes, by: \.path).mapValues { $0.map(\.method) }
        for (path, allowed) in methodsByPath {
            let allow = allowed.map(\.rawValue).sorted().joined(separator: ", ")
            // QUERY: the safe method with a body (draft-ietf-httpbis-safe-method-w-body), which clients
            // and fuzzers already send.
            let candidates =
                [.get, .post, .put, .patch, .delete, .trace] + [HTTPRequest.Method("QUERY")].compactMap { $0 }
            for method in candidates where !allowed.contains(method) {
                router.on(RouterPath(path), method: method) { request, _ -> Response in
                    var response = try JSONResponse.make(
                        status: .methodNotAllowed,
                        JSONValue.object([
                            "error": .object([
                                "code": .string("method_not_allowed"),
                                "message": .string("\(method.rawValue) is not allowed here; allowed: \(allow)"),
                            ])
                        ]))
                    response.headers[.allow] = allow
                    return response
                }
            }
        }
    }

    /// Refuses a path parameter or query value holding a control character (`%00`, a newline): no
    /// id or filter has one, and PostgreSQL cannot even compare text holding U+0000.
    /// - Throws: ``ValidationError`` naming the parameter (400).
    static func refuseControlCharacters(_ request: Request, _ context: AgentJobsRequestContext) throws {
        for (name, value) in context.parameters
        where value.hasControlCharacter || (String(value).removingPercentEncoding ?? "").hasControlCharacter {
            throw ValidationError(field: String(name), message: "must not contain control characters")
        }
        for (name, value) in QueryReader.parameters(of: request)
        where value.hasControlCharacter || name.hasControlCharacter {
            throw ValidationError(field: name, message: "must not contain control characters")
        }
    }

    /// The route paths and methods, for documentation checks.
    public var routeSignatures: [(method: String, path: String)] {
        routes.map { ($0.method.rawValue, $0.openAPIPath) }
    }
}
