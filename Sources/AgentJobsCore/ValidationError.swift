/// Bad input, naming the field at fault and what is wrong with it.
///
/// The HTTP layer turns it into a 422 response whose body carries `field`, so a form can show the
/// message next to the right input.
public struct ValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The offending field as a dotted path, e.g. `parameters.connectorTypes`.
    public var field: String
    /// What is wrong and, where it helps, what would be accepted.
    public var message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}
