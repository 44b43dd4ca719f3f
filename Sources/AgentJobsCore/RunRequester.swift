/// Who asked for something done to a run — its trigger or its cancel: the holder of an API token
/// (by the token's id and name), a host, or the control plane's scheduler.
public struct RunRequester: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        /// A request with an API token: `id` and `name` are the token's.
        case token
        /// A host's orchestrator: `id` and `name` are the host's.
        case host
        /// The job's schedule, fired by the control plane; no id or name.
        case schedule
    }

    public var kind: Kind
    public var id: String?
    public var name: String?

    public init(kind: Kind, id: String? = nil, name: String? = nil) {
        self.kind = kind
        self.id = id
        self.name = name
    }

    public static let schedule = RunRequester(kind: .schedule)

    /// The stored form, one text column: `kind`, or `kind:id:name` (the name, which may hold
    /// colons, is everything after the second colon).
    public var storedForm: String {
        guard let id else { return kind.rawValue }
        return "\(kind.rawValue):\(id):\(name ?? "")"
    }

    /// Reads ``storedForm``; nil when it is not one.
    public init?(storedForm: String) {
        let parts = storedForm.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard let kind = Kind(rawValue: String(parts[0])) else { return nil }
        switch parts.count {
        case 1: self.init(kind: kind)
        case 3: self.init(kind: kind, id: String(parts[1]), name: parts[2].isEmpty ? nil : String(parts[2]))
        default: return nil
        }
    }

    /// Writes the requester as its `Codable` form: keys sorted, absent optionals left out.
    public func writeJSON(into writer: inout JSONWriter) {
        writer.beginObject()
        if let id {
            writer.key("id")
            writer.string(id)
        }
        writer.key("kind")
        writer.string(kind.rawValue)
        if let name {
            writer.key("name")
            writer.string(name)
        }
        writer.endObject()
    }
}
