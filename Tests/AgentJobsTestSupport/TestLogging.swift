import Foundation
import Logging

/// A logger for tests: warnings and above go to stderr (set AGENTJOBS_TEST_LOG_LEVEL=debug for more).
public func testLogger(_ label: String) -> Logger {
    var logger = Logger(label: label) { label in StreamLogHandler.standardError(label: label) }
    let level = ProcessInfo.processInfo.environment["AGENTJOBS_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:))
    logger.logLevel = level ?? .warning
    return logger
}

/// A name no other test (or earlier run against the same broker) uses.
public func uniqueName(_ prefix: String) -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}
