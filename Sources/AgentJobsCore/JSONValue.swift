/// An arbitrary JSON value, used to validate request bodies field by field (unknown fields are refused,
/// and every error names its field) before they become domain values.
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// - Throws: `DecodingError.dataCorrupted` at the value's path, in words, for a value that is
    ///   JSON but none of these types holds: a number out of `Double`'s range, a string that is not
    ///   valid Unicode.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        func corrupt(_ description: String) -> DecodingError {
            .dataCorrupted(.init(codingPath: container.codingPath, debugDescription: description))
        }
        if container.decodeNil() {
            self = .null
            return
        }
        if let value = try? container.decode(Bool.self) {
            self = .bool(value)
            return
        }
        // A value of another type is a `typeMismatch`, and the next type is tried; a value of the
        // type tried that does not convert is another error (Foundation's own, not a DecodingError).
        do {
            self = .number(try container.decode(Double.self))
            return
        } catch DecodingError.typeMismatch {
            // Not a number.
        } catch {
            throw corrupt("a number out of the range of a 64-bit floating-point number")
        }
        do {
            self = .string(try container.decode(String.self))
            return
        } catch DecodingError.typeMismatch {
            // Not a string.
        } catch {
            throw corrupt("text that is not valid Unicode (invalid UTF-8, or an unpaired surrogate escape)")
        }
        do {
            self = .array(try container.decode([JSONValue].self))
            return
        } catch DecodingError.typeMismatch(_, let context) where context.codingPath.count == container.codingPath.count
        {
            // Not an array: an object, below.
        }
        self = .object(try container.decode([String: JSONValue].self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The JSON type's name, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

extension JSONValue {
    /// This value as the string field `field`; `nil` when null.
    /// - Throws: ``ValidationError`` naming `field` when it is not a string.
    public func string(field: String) throws -> String? {
        switch self {
        case .null: return nil
        case .string(let string): return string
        default: throw ValidationError(field: field, message: "must be a string, not \(typeName)")
        }
    }

    /// This value as the string field `field` of a request; `nil` when null.
    /// - Throws: ``ValidationError`` naming `field` when it is not a string, or when it holds U+0000
    ///   or another control character (an embedded NUL would silently cut the value in C APIs and
    ///   logs; no field of the API is multi-line text).
    public func text(field: String) throws -> String? {
        guard let string = try string(field: field) else { return nil }
        if let bad = string.unicodeScalars.first(where: { $0.properties.generalCategory == .control }) {
            throw ValidationError(
                field: field,
                message:
                    "must not contain control characters (found U+\(String(bad.value, radix: 16, uppercase: true).leftPadded(to: 4)))"
            )
        }
        return string
    }

    /// This value as the whole-number field `field`, within `range`; `nil` when null.
    /// - Throws: ``ValidationError`` naming `field` when it is not a whole number in `range`.
    public func int(field: String, range: ClosedRange<Int>) throws -> Int? {
        if self == .null { return nil }
        guard case .number(let number) = self, number.rounded() == number, number.magnitude < 1e15 else {
            throw ValidationError(field: field, message: "must be a whole number")
        }
        let int = Int(number)
        guard range.contains(int) else {
            throw ValidationError(field: field, message: "must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return int
    }
}

/// Reads the fields of a JSON object one by one, with errors that name the field, and refuses
/// fields nobody asked for.
public struct JSONObjectReader: Sendable {
    private let fields: [String: JSONValue]
    private let path: String
    private let refusesControlCharacters: Bool
    private var consumed: Set<String> = []

    /// - Parameters:
    ///   - value: The value that must be an object.
    ///   - path: The dotted path of `value` in the request, or empty for the body itself.
    ///   - refusesControlCharacters: Whether string fields with control characters are refused: true for
    ///     requests (the edge), false for reading back what was stored.
    /// - Throws: ``ValidationError`` when `value` is not an object.
    public init(_ value: JSONValue, path: String = "", refusesControlCharacters: Bool = true) throws {
        guard case .object(let fields) = value else {
            throw ValidationError(
                field: path.isEmpty ? "body" : path, message: "must be a JSON object, not \(value.typeName)")
        }
        self.fields = fields
        self.path = path
        self.refusesControlCharacters = refusesControlCharacters
    }

    /// The dotted path of a field of this object.
    public func fieldPath(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    /// Whether the object has the field (even with a null value).
    public func has(_ name: String) -> Bool { fields[name] != nil }

    /// The raw value of a field, or nil when absent or null.
    public mutating func value(_ name: String) -> JSONValue? {
        consumed.insert(name)
        guard let value = fields[name], value != .null else { return nil }
        return value
    }

    public mutating func string(_ name: String) throws -> String? {
        let field = fieldPath(name)
        return try refusesControlCharacters ? value(name)?.text(field: field) : value(name)?.string(field: field)
    }

    public mutating func requiredString(_ name: String) throws -> String {
        guard let string = try string(name) else {
            throw ValidationError(field: fieldPath(name), message: "is required")
        }
        return string
    }

    /// A non-empty string after trimming whitespace, at most `maxBytes` bytes of UTF-8.
    public mutating func requiredName(_ name: String, maxBytes: Int = 200) throws -> String {
        let string = try requiredString(name).trimmingWhitespace()
        guard !string.isEmpty else { throw ValidationError(field: fieldPath(name), message: "must not be empty") }
        guard string.utf8.count <= maxBytes else {
            throw ValidationError(field: fieldPath(name), message: "must be at most \(maxBytes) bytes of UTF-8")
        }
        return string
    }

    public mutating func int(_ name: String, range: ClosedRange<Int>) throws -> Int? {
        try value(name)?.int(field: fieldPath(name), range: range)
    }

    public mutating func bool(_ name: String) throws -> Bool? {
        guard let value = value(name) else { return nil }
        guard case .bool(let bool) = value else {
            throw ValidationError(field: fieldPath(name), message: "must be true or false, not \(value.typeName)")
        }
        return bool
    }

    public mutating func stringArray(_ name: String) throws -> [String]? {
        guard let value = value(name) else { return nil }
        guard case .array(let items) = value else {
            throw ValidationError(field: fieldPath(name), message: "must be an array of strings, not \(value.typeName)")
        }
        return try items.enumerated().map { index, item in
            let field = "\(fieldPath(name))[\(index)]"
            guard case .string = item,
                let string = try refusesControlCharacters ? item.text(field: field) : item.string(field: field)
            else {
                throw ValidationError(
                    field: "\(fieldPath(name))[\(index)]", message: "must be a string, not \(item.typeName)")
            }
            return string
        }
    }

    public mutating func object(_ name: String) throws -> JSONObjectReader? {
        guard let value = value(name) else { return nil }
        return try JSONObjectReader(
            value, path: fieldPath(name), refusesControlCharacters: refusesControlCharacters)
    }

    /// Refuses any field that was not read.
    /// - Throws: ``ValidationError`` naming the first unknown field (in sorted order, so errors are stable).
    public func rejectUnknownFields(allowed: [String]? = nil) throws {
        let known = allowed.map(Set.init) ?? consumed
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            throw ValidationError(field: fieldPath(unknown), message: "is not a known field")
        }
    }
}

extension String {
    /// The string without leading and trailing spaces, tabs and newlines.
    public func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}

extension String {
    /// The string with leading zeros up to `width` characters.
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
