import AgentJobsCore

/// Reading one stored row into a value. A value that is missing, or that this build does not know,
/// is a ``StoreError/Code/corrupt`` naming the table, the column and the row — never a plausible
/// default that would show a user something that did not happen.
struct StoredRow {
    let table: String
    /// The row's id (its primary key as text), for messages.
    let id: String

    /// - Throws: ``StoreError/Code/corrupt`` when the row has no id.
    init(_ table: String, id: String?) throws {
        guard let id else { throw StoreError(.corrupt, "\(table): a row has no id") }
        self.table = table
        self.id = id
    }

    /// A column that must hold a value.
    func value<T>(_ value: T?, _ column: String) throws -> T {
        guard let value else { throw StoreError(.corrupt, "\(table).\(column) of \(id) is missing") }
        return value
    }

    /// A column that must hold one of the values of `T`.
    func known<T: RawRepresentable>(_ raw: String?, _ column: String) throws -> T where T.RawValue == String {
        let raw = try value(raw, column)
        guard let known = T(rawValue: raw) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) holds \"\(raw)\", which this build does not know")
        }
        return known
    }

    /// A requester in its stored form (``RunRequester/storedForm``), or nil for a NULL column.
    func requester(_ text: String?, _ column: String) throws -> RunRequester? {
        guard let text else { return nil }
        guard let requester = RunRequester(storedForm: text) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) holds \"\(text)\", which this build does not know")
        }
        return requester
    }

    /// Agent parameters stored as JSON text, for an agent of `agentType`. JSONParser rather than
    /// JSONDecoder: every run read back from the store (the aggregator reads one per event) decodes them.
    func parameters(_ text: String?, _ column: String, agentType: AgentType) throws -> AgentParameters {
        let text = try value(text, column)
        guard let parameters = AgentParameters.parseStored(text) else {
            throw StoreError(
                .corrupt, "\(table).\(column) of \(id) is not the parameters of a \(agentType.rawValue) agent")
        }
        return parameters
    }

    /// A retry policy stored as JSON text (``RetryPolicy/jsonText``), or nil for a NULL column.
    func retryPolicy(_ text: String?, _ column: String) throws -> RetryPolicy? {
        guard let text else { return nil }
        guard let policy = RetryPolicy.parseStored(text) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) is not a retry policy")
        }
        return policy
    }

    /// A webhook's events in their stored form (``WebhookEvent/storedForm(_:)``).
    func events(_ text: String?, _ column: String) throws -> [WebhookEvent] {
        let text = try value(text, column)
        guard let events = WebhookEvent.parseStored(text) else {
            throw StoreError(.corrupt, "\(table).\(column) of \(id) holds \"\(text)\", which this build does not know")
        }
        return events
    }
}
