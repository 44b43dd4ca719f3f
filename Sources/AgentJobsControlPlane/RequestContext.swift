import AgentJobsCore
import AgentJobsStore
import Hummingbird

/// Who made a request, as established from its bearer token.
enum Principal: Sendable {
    /// A user or integration with an API token.
    case user(APIToken)
    /// A host's orchestrator, with the host's credential.
    case host(Host)
}

/// The per-request context of the control plane's router.
public struct AgentJobsRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}
