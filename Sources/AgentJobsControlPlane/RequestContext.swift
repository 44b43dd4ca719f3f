import AgentJobsCore
import AgentJobsStore
import Hummingbird

/// Who made a request, as established from its bearer token.
enum Principal: Sendable {
    /// A user or integration with an API token.
    case user(APIToken)
    /// A host's orchestrator, with the host's credential.
    case host(Host)

    /// The principal as a run records who asked for something.
    var requester: RunRequester {
        switch self {
        case .user(let token): RunRequester(kind: .token, id: token.id, name: token.name)
        case .host(let host): RunRequester(kind: .host, id: host.id, name: host.name)
        }
    }
}

/// The per-request context of the control plane's router.
public struct AgentJobsRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Who made the request, once the route's access check established it (nil on open routes).
    var principal: Principal?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}
