/// Why the embedded message log refused or failed an operation.
public struct MessageLogError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: String, Sendable, Equatable {
        /// The database cannot be reached, refused the operation, or the consumer has stopped.
        case unavailable = "unavailable"
        /// The call is not allowed in the consumer's state (a second `run()`, two readers at once).
        case conflict = "conflict"
        /// A stored message, offset or lease cannot be read; the message names the table, column and row.
        case corrupt = "corrupt"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

extension MessageLogError {
    /// A stored value of the log that is missing or cannot be read.
    static func corrupt(_ table: String, _ column: String, of row: @autoclosure () -> String) -> MessageLogError {
        MessageLogError(.corrupt, "\(table).\(column) of \(row()) is missing or cannot be read")
    }
}
