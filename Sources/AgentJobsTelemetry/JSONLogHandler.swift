import AgentJobsCore
import Foundation
import Logging
import Synchronization

/// A swift-log handler that writes one JSON object per line to standard error, for log pipelines:
/// `time` (ISO 8601, UTC, milliseconds), `level`, `logger`, `message`, then every metadata key
/// (`run_id`, `job_id`, `host_id`, `error`, ...) as a string member, nested metadata flattened
/// to its description. Keys collide with none of the four fixed members: a metadata key named like
/// one is written with a `meta_` prefix.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let line = Self.line(
            time: Date(), level: event.level, logger: label, message: event.message.description, metadata: merged)
        StandardError.write(line)
    }

    /// One log line, newline included.
    static func line(
        time: Date, level: Logger.Level, logger: String, message: String, metadata: Logger.Metadata
    ) -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        writer.beginObject()
        writer.key("time")
        writer.date(time)
        writer.key("level")
        writer.string(level.rawValue)
        writer.key("logger")
        writer.string(logger)
        writer.key("message")
        writer.string(message)
        for key in metadata.keys.sorted() {
            guard let value = metadata[key] else { continue }
            writer.key(escaping: Self.reserved.contains(key) ? "meta_" + key : key)
            writer.string(value.description)
        }
        writer.endObject()
        var bytes = writer.bytes
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    private static let reserved: Set<String> = ["time", "level", "logger", "message"]
}

/// Whole lines to standard error, never interleaved between threads.
enum StandardError {
    private static let lock = Mutex(())

    static func write(_ bytes: [UInt8]) {
        lock.withLock { _ in try? FileHandle.standardError.write(contentsOf: bytes) }
    }
}
