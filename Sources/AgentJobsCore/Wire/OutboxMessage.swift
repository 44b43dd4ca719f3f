#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A command for a host, as a store writes it to the outbox in the transaction that decides it.
/// Every store encodes its commands here, so the relay publishes the same bytes whichever store
/// wrote them.
public struct OutboxCommand: Sendable, Hashable {
    /// Commands go to `agentjobs.dispatch`, keyed by host: a cancel never overtakes its dispatch.
    public var topic: String { Topic.dispatch }
    public var key: String
    /// The unversioned type (``RunDispatch/type``, ``RunCancel/type``), as outbox rows store it.
    public var type: String
    public var runId: String
    /// The JSON body.
    public var payload: [UInt8]
    /// The W3C trace context of what created the command (``TraceParent``), sent as a header.
    public var traceParent: String?

    public init(key: String, type: String, runId: String, payload: [UInt8], traceParent: String? = nil) {
        self.key = key
        self.type = type
        self.runId = runId
        self.payload = payload
        self.traceParent = traceParent
    }

    /// The dispatch of a run just triggered, by what `traceParent` names (``TraceParent``).
    public static func dispatch(_ run: Run, traceParent: String? = nil) -> OutboxCommand {
        OutboxCommand(
            key: run.hostId, type: RunDispatch.type, runId: run.id, payload: RunDispatch(run: run).jsonBytes,
            traceParent: traceParent)
    }

    /// The cancel of `run`'s current dispatch, requested at `requestedAt`.
    public static func cancel(_ run: Run, requestedAt: Date) -> OutboxCommand {
        let cancel = RunCancel(
            runId: run.id, hostId: run.hostId, dispatchEpoch: run.dispatchEpoch, requestedAt: requestedAt)
        return OutboxCommand(key: run.hostId, type: RunCancel.type, runId: run.id, payload: cancel.jsonBytes)
    }
}

/// A message waiting in the store's outbox, written in the same transaction as the change it announces.
public struct OutboxMessage: Sendable, Hashable {
    /// Increasing in write order; the relay publishes in this order.
    public var sequence: Int64
    public var topic: String
    public var key: String
    /// The run the message is about.
    public var runId: String?
    /// The message type (``RunDispatch/type``, ``RunCancel/type``).
    public var type: String
    /// The JSON body.
    public var payload: [UInt8]
    public var createdAt: Date
    /// The W3C trace context of what wrote the row (``TraceParent``), sent as a header.
    public var traceParent: String?

    public init(
        sequence: Int64, topic: String, key: String, runId: String? = nil, type: String, payload: [UInt8],
        createdAt: Date, traceParent: String? = nil
    ) {
        self.sequence = sequence
        self.topic = topic
        self.key = key
        self.runId = runId
        self.type = type
        self.payload = payload
        self.createdAt = createdAt
        self.traceParent = traceParent
    }
}

extension OutboxMessage {
    /// The signed message the relay publishes for this outbox row. Its id is the outbox sequence,
    /// so a row published twice (relay killed before marking it sent) is the same message twice.
    /// - Parameter signingKey: The control plane's dispatch-signing key.
    /// - Throws: `CryptoKitError` if signing fails.
    public func wireMessage(signedWith signingKey: DispatchSigningKey) throws -> OutgoingMessage {
        OutgoingMessage(
            topic: topic, envelope: envelope, body: payload,
            signature: try signingKey.signature(envelope: envelope, body: payload)
        ).tracing(traceParent)
    }

    /// Rows per batch signature in ``wireMessages(_:signedWith:)``: 32 keeps a message's inclusion
    /// path at five hashes (~220 bytes of header) while signing costs a 32nd of a signature per row.
    public static let signatureBatchSize = 32

    /// The signed messages for several rows, in order, signed in batches of
    /// ``signatureBatchSize`` (``DispatchSigningKey/batchSignatures(for:)``).
    /// - Throws: `CryptoKitError` if signing fails.
    public static func wireMessages(_ rows: [OutboxMessage], signedWith signingKey: DispatchSigningKey) throws
        -> [OutgoingMessage]
    {
        var messages: [OutgoingMessage] = []
        messages.reserveCapacity(rows.count)
        var attributes: [UInt8] = []
        var parts: [(envelope: WireEnvelope, time: [UInt8])] = []
        var leaves: [MerkleTree.Hash] = []
        for start in stride(from: 0, to: rows.count, by: signatureBatchSize) {
            let batch = rows[start..<min(start + signatureBatchSize, rows.count)]
            // Each envelope and its time are made once, for the leaf hash and the headers.
            parts.removeAll(keepingCapacity: true)
            leaves.removeAll(keepingCapacity: true)
            for row in batch {
                let envelope = row.envelope
                let time = ISO8601.utf8(envelope.time)
                attributes.removeAll(keepingCapacity: true)
                envelope.appendSignedAttributes(to: &attributes, time: time)
                leaves.append(MerkleTree.leafHash(attributes: attributes, body: row.payload))
                parts.append((envelope, time))
            }
            let signatures = try signingKey.batchSignatures(leaves: leaves)
            for ((row, part), signature) in zip(zip(batch, parts), signatures) {
                messages.append(
                    OutgoingMessage(
                        topic: row.topic, envelope: part.envelope, time: part.time, body: row.payload,
                        signature: signature
                    ).tracing(row.traceParent))
            }
        }
        return messages
    }

    /// The envelope of this row's message.
    var envelope: WireEnvelope {
        // Rows store the unversioned type (`agentjobs.run.dispatch`); every stored body is version 1.
        let versioned =
            Self.relayTypes.first { $0.stored == type }?.versioned
            ?? (Self.hasVersionSuffix(type) ? type : "\(type).v1")
        return WireEnvelope(
            id: "outbox-\(sequence)", source: WireEnvelope.controlPlaneSource, type: versioned, time: createdAt,
            subject: runId ?? key, key: key)
    }

    /// The types of the rows the store writes: as stored, versioned, and as a `ce_type` header
    /// value, made once (the relay needs them for every message).
    static let relayTypes = [RunDispatch.self, RunCancel.self].map { (body: any WireBody.Type) in
        (stored: body.type, versioned: body.versionedType, header: Array(body.versionedType.utf8))
    }

    /// Whether `type` ends in `.v` and digits, e.g. `agentjobs.run.dispatch.v1` (what the regular
    /// expression `\.v[0-9]+$` matched; written out because Foundation's regex cost several µs per row).
    static func hasVersionSuffix(_ type: String) -> Bool {
        guard let dot = type.utf8.lastIndex(of: UInt8(ascii: ".")) else { return false }
        let suffix = type.utf8[type.utf8.index(after: dot)...]
        guard suffix.first == UInt8(ascii: "v") else { return false }
        let digits = suffix.dropFirst()
        return !digits.isEmpty && digits.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }
}
