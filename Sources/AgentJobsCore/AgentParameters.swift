/// The parameters of a batch agent run, validated for its agent type.
///
/// Wire form: a JSON object, `{"connectorTypes": [...], "connectionName": "..."}` for `lineage-plus`
/// and `external-monitors`, `{"fileName": "..."}` for `datahealth`.
public enum AgentParameters: Sendable, Hashable {
    /// Lineage+ and External Monitors: the connector types to run and, optionally, one connection.
    case connectors(connectorTypes: [String], connectionName: String?)
    /// DataHealth: the file to check.
    case file(fileName: String)

    /// Validates raw JSON parameters for an agent type.
    /// - Parameters:
    ///   - json: The `parameters` object of a request (nil when absent).
    ///   - agentType: The job's agent type.
    ///   - path: The field path used in errors.
    /// - Throws: ``ValidationError`` for a persistent agent type, a missing or malformed field, or an unknown field.
    public static func validate(_ json: JSONValue?, for agentType: AgentType, path: String = "parameters") throws
        -> AgentParameters
    {
        guard agentType.kind == .batch else {
            throw ValidationError(
                field: "agentType",
                message:
                    "'\(agentType.rawValue)' is a persistent agent: it runs continuously on its host and cannot be run as a job; batch agent types are lineage-plus, external-monitors, datahealth"
            )
        }
        var reader = try JSONObjectReader(json ?? .object([:]), path: path)
        let parameters: AgentParameters
        switch agentType {
        case .lineagePlus, .externalMonitors:
            guard let types = try reader.stringArray("connectorTypes") else {
                throw ValidationError(
                    field: reader.fieldPath("connectorTypes"),
                    message: "is required: a non-empty list of connector types")
            }
            guard types.count <= maxConnectorTypes else {
                throw ValidationError(
                    field: reader.fieldPath("connectorTypes"),
                    message: "must list at most \(maxConnectorTypes) connector types (got \(types.count))")
            }
            let trimmed = types.map { $0.trimmingWhitespace() }
            guard !trimmed.isEmpty else {
                throw ValidationError(
                    field: reader.fieldPath("connectorTypes"), message: "must list at least one connector type")
            }
            for (index, type) in trimmed.enumerated() {
                try checkToken(type, field: "\(reader.fieldPath("connectorTypes"))[\(index)]")
            }
            var seen: Set<String> = []
            let unique = trimmed.filter { seen.insert($0).inserted }
            let connection = try reader.string("connectionName").map { $0.trimmingWhitespace() }
            if let connection {
                try checkToken(connection, field: reader.fieldPath("connectionName"), allowSpaces: true)
            }
            parameters = .connectors(
                connectorTypes: unique, connectionName: connection?.isEmpty == true ? nil : connection)
        case .datahealth:
            let fileName = try reader.requiredString("fileName").trimmingWhitespace()
            try checkToken(fileName, field: reader.fieldPath("fileName"), allowSpaces: true)
            parameters = .file(fileName: fileName)
        case .dataSource, .sds, .crossSource:
            throw ValidationError(field: "agentType", message: "'\(agentType.rawValue)' is not a batch agent type")
        }
        try reader.rejectUnknownFields()
        return parameters
    }

    /// The most connector types one run may have (each becomes an argument of the agent).
    public static let maxConnectorTypes = 64

    /// Parameter values end up as command-line arguments of the agent: refuse the empty string, control
    /// characters, and (unless allowed) spaces, and keep them short.
    private static func checkToken(_ value: String, field: String, allowSpaces: Bool = false) throws {
        guard !value.isEmpty else { throw ValidationError(field: field, message: "must not be empty") }
        guard value.utf8.count <= 256 else { throw ValidationError(field: field, message: "must be at most 256 bytes") }
        for scalar in value.unicodeScalars {
            if scalar.properties.generalCategory == .control {
                throw ValidationError(field: field, message: "must not contain control characters")
            }
            if !allowSpaces && scalar.properties.isWhitespace {
                throw ValidationError(field: field, message: "must not contain spaces")
            }
        }
        if value.hasPrefix("-") {
            throw ValidationError(field: field, message: "must not start with '-'")
        }
    }

    /// The wire form.
    public var json: JSONValue {
        switch self {
        case .connectors(let types, let connection):
            var object: [String: JSONValue] = ["connectorTypes": .array(types.map(JSONValue.string))]
            if let connection { object["connectionName"] = .string(connection) }
            return .object(object)
        case .file(let fileName):
            return .object(["fileName": .string(fileName)])
        }
    }

    /// Whether these parameters have the shape the agent type expects.
    public func fits(_ agentType: AgentType) -> Bool {
        switch (self, agentType) {
        case (.connectors, .lineagePlus), (.connectors, .externalMonitors), (.file, .datahealth): return true
        default: return false
        }
    }
}

extension AgentParameters: Codable {
    /// Reads parameters in their wire form, as stored (already validated when they were saved).
    /// - Throws: ``ValidationError`` when neither `fileName` nor `connectorTypes` is there.
    public init(wireForm json: JSONValue) throws {
        var reader = try JSONObjectReader(json, path: "parameters", refusesControlCharacters: false)
        if let fileName = try reader.string("fileName") {
            self = .file(fileName: fileName)
        } else if let types = try reader.stringArray("connectorTypes") {
            self = .connectors(connectorTypes: types, connectionName: try reader.string("connectionName"))
        } else {
            throw ValidationError(field: "parameters", message: "needs fileName or connectorTypes")
        }
    }

    public init(from decoder: any Decoder) throws {
        do {
            try self.init(wireForm: try JSONValue(from: decoder))
        } catch let error as ValidationError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        try json.encode(to: encoder)
    }
}

extension AgentParameters {
    /// Writes the wire form (the same bytes as `JSONEncoder` with sorted keys).
    public func write(to writer: inout JSONWriter) {
        writer.beginObject()
        switch self {
        case .connectors(let types, let connection):
            if let connection {
                writer.key("connectionName")
                writer.string(connection)
            }
            writer.key("connectorTypes")
            writer.beginArray()
            for type in types { writer.string(type) }
            writer.endArray()
        case .file(let fileName):
            writer.key("fileName")
            writer.string(fileName)
        }
        writer.endObject()
    }

    /// The wire form as JSON text, as stored in the `parameters` columns.
    public var jsonText: String {
        var writer = JSONWriter(capacity: 128)
        write(to: &writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// Reads the stored wire form (the `parameters` column) without Foundation's `JSONDecoder`.
    /// - Returns: nil when `text` is not parameters JSON.
    public static func parseStored(_ text: String) -> AgentParameters? {
        guard let json = try? JSONParser.parse(text) else { return nil }
        return try? AgentParameters(wireForm: json)
    }
}
