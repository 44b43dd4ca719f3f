import AgentJobsCore
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// OpenTelemetry tracing of a run's path: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, then exported over OTLP by swift-otel (every
/// `OTEL_*` setting of the OpenTelemetry specification it supports applies: protocol, sampler,
/// batch delay, headers, service name).
///
/// Off, the tracer is swift-distributed-tracing's no-op one: spans cost a few nanoseconds, no
/// `traceparent` is stored with an outbox row and no header is sent.
public enum RunTracing {
    /// Bootstraps tracing for `role` when an OTLP endpoint is configured.
    /// - Returns: The exporter's service, for the role's service group (it flushes on shutdown);
    ///   nil when tracing is off.
    /// - Throws: swift-otel's configuration error (an unknown protocol or sampler, …).
    public static func bootstrap(role: String, environment: [String: String]) throws -> (any Service)? {
        let endpoint = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] ?? environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
        guard let endpoint, !endpoint.isEmpty, environment["OTEL_SDK_DISABLED"]?.lowercased() != "true" else {
            return nil
        }
        var configuration = OTel.Configuration.default
        configuration.serviceName = "agentjobs-\(role)"
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.diagnosticLogger = .custom(Logger(label: "agentjobs.tracing"))
        configuration.diagnosticLogLevel = .warning
        // OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_TRACES_SAMPLER, … override these.
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(backend.factory)
        return backend.service
    }

    /// The `traceparent` of the current task's span; nil when tracing is off or there is none.
    public static func currentTraceParent() -> String? {
        guard let context = InstrumentationContext.current else { return nil }
        var carrier: [String: String] = [:]
        InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryInjector())
        return TraceParent.validated(carrier[TraceParent.header])
    }

    /// A context whose span is the one `traceParent` names (the top level when nil), to start the
    /// spans of another process under it.
    public static func context(continuing traceParent: String?) -> InstrumentationContext {
        var context = InstrumentationContext.topLevel
        if let traceParent {
            InstrumentationSystem.instrument.extract(
                [TraceParent.header: traceParent], into: &context, using: DictionaryExtractor())
        }
        return context
    }
}

private struct DictionaryInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

private struct DictionaryExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}
