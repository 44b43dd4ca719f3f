import Foundation
import Logging
import OTel
import Synchronization

/// How the processes write their logs (`AGENTJOBS_LOG_FORMAT`).
public enum LogFormat: String, Sendable, CaseIterable {
    /// swift-log's line format, for a terminal (the default).
    case plain
    /// One JSON object per line (``JSONLogHandler``), for a log pipeline.
    case json

    /// The format named by `AGENTJOBS_LOG_FORMAT` in `environment`.
    /// - Throws: ``LogFormatError`` for a value that names no format.
    public static func from(environment: [String: String]) throws(LogFormatError) -> LogFormat {
        guard let value = environment["AGENTJOBS_LOG_FORMAT"], !value.isEmpty else { return .plain }
        guard let format = LogFormat(rawValue: value.lowercased()) else {
            throw LogFormatError(
                "AGENTJOBS_LOG_FORMAT: '\(value)' is not a log format; use \(allCases.map(\.rawValue).joined(separator: " or "))"
            )
        }
        return format
    }

    /// A logger at the level `AGENTJOBS_LOG_LEVEL` names in `environment` (info when unset).
    public static func logger(
        _ label: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = environment["AGENTJOBS_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        return logger
    }

    /// The format the process was bootstrapped with (``bootstrap(_:)``); plain before that.
    public static var current: LogFormat { bootstrapped.withLock { $0 } }
    private static let bootstrapped = Mutex(LogFormat.plain)

    /// Routes swift-log to this format's handler; once per process, before the first log line.
    public static func bootstrap(_ format: LogFormat) {
        bootstrapped.withLock { $0 = format }
        // The trace and span ids of the current span, when tracing is on (`trace_id`, `span_id`).
        let traceIds = OTel.makeLoggingMetadataProvider()
        switch format {
        case .plain:
            LoggingSystem.bootstrap(
                { StreamLogHandler.standardError(label: $0, metadataProvider: $1) }, metadataProvider: traceIds)
        case .json:
            LoggingSystem.bootstrap(
                { JSONLogHandler(label: $0, metadataProvider: $1) }, metadataProvider: traceIds)
        }
    }
}

/// An `AGENTJOBS_LOG_FORMAT` that names no format.
public struct LogFormatError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
