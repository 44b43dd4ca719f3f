import Crypto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// Kafka ACLs cannot restrict by key, so signatures are what keep one host from acting on
// another's work: the control plane signs dispatch commands (Ed25519; every orchestrator holds the
// public key), and each host signs its events with a key derived from its own credential
// (HMAC-SHA256), which the aggregator checks against the host the run was dispatched to.

/// The control plane's dispatch-signing key (Ed25519).
public struct DispatchSigningKey: Sendable {
    public let rawRepresentation: [UInt8]
    /// The parsed key, made once: parsing derives the public key (a scalar multiplication), which
    /// cost as much as the signature itself when it was redone for every message.
    private let parsed: ParsedKey

    /// Holds the CryptoKit key, which is not `Sendable`. It is immutable after `init` and signing
    /// only reads it, so sharing it between threads is safe.
    private final class ParsedKey: @unchecked Sendable {
        let key: Curve25519.Signing.PrivateKey
        init(_ key: Curve25519.Signing.PrivateKey) { self.key = key }
    }

    /// A new random key.
    public init() {
        let key = Curve25519.Signing.PrivateKey()
        rawRepresentation = Array(key.rawRepresentation)
        parsed = ParsedKey(key)
    }

    /// Restores a key from its 32 raw bytes.
    /// - Throws: ``ValidationError`` when the bytes are not an Ed25519 private key.
    public init(rawRepresentation: [UInt8]) throws {
        guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: rawRepresentation) else {
            throw ValidationError(field: "signingKey", message: "not a 32-byte Ed25519 private key")
        }
        self.rawRepresentation = rawRepresentation
        parsed = ParsedKey(key)
    }

    private var key: Curve25519.Signing.PrivateKey { parsed.key }

    /// The public half, as given to hosts.
    public var verifier: DispatchVerifier { DispatchVerifier(key.publicKey) }

    /// The `agentjobs_signature` header value for a message.
    /// - Throws: `CryptoKitError` if signing fails.
    public func signature(envelope: WireEnvelope, body: [UInt8]) throws -> String {
        "ed25519:" + Data(try key.signature(for: envelope.signedBytes(body: body))).base64EncodedString()
    }
}

/// Checks dispatch commands against the control plane's public key.
public struct DispatchVerifier: Sendable, Hashable {
    private let rawKey: [UInt8]

    init(_ key: Curve25519.Signing.PublicKey) { rawKey = Array(key.rawRepresentation) }

    /// Reads a public key from its base64 form (as returned by host registration).
    /// - Throws: ``ValidationError`` (field `signingPublicKey`) when it is not a 32-byte Ed25519 key.
    public init(base64: String) throws {
        guard let data = Data(base64Encoded: base64), data.count == 32,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: data)
        else {
            throw ValidationError(field: "signingPublicKey", message: "not a base64 Ed25519 public key")
        }
        self.init(key)
    }

    /// The key in base64, as stored in a host's configuration.
    public var base64: String { Data(rawKey).base64EncodedString() }

    /// Whether `message` carries a valid control-plane signature.
    /// - Throws: ``WireError`` `badSignature` when it is missing, malformed or wrong.
    public func verify(_ message: WireMessage) throws(WireError) {
        guard let header = message.signature, header.hasPrefix("ed25519:") else {
            throw WireError(.badSignature, "dispatch command is not signed by the control plane")
        }
        guard let signature = Data(base64Encoded: String(header.dropFirst("ed25519:".count))),
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: rawKey),
            key.isValidSignature(signature, for: message.envelope.signedBytes(body: message.body))
        else {
            throw WireError(.badSignature, "dispatch command signature does not verify with the control plane's key")
        }
    }
}

/// A host's event-signing key: HMAC-SHA256 keyed with the stored form of the host credential
/// (its SHA-256 hex), so that the aggregator can verify from the store alone while the credential
/// itself never leaves the host after registration.
public struct HostEventKey: Sendable, Hashable {
    private let keyBytes: [UInt8]

    /// The key of the host holding `credential`.
    public init(credential: String) { keyBytes = Array(Secret.hash(credential).utf8) }

    /// The key of the host whose stored credential hash is `credentialHash`.
    public init(credentialHash: String) { keyBytes = Array(credentialHash.utf8) }

    /// The `agentjobs_signature` header value for a message.
    public func signature(envelope: WireEnvelope, body: [UInt8]) -> String {
        let mac = HMAC<SHA256>.authenticationCode(
            for: envelope.signedBytes(body: body), using: SymmetricKey(data: keyBytes))
        return "hmac-sha256:" + Data(mac).base64EncodedString()
    }

    /// Whether `message` carries this host's signature.
    /// - Throws: ``WireError`` `badSignature` when it is missing, malformed or wrong.
    public func verify(_ message: WireMessage) throws(WireError) {
        guard let header = message.signature, header.hasPrefix("hmac-sha256:"),
            let mac = Data(base64Encoded: String(header.dropFirst("hmac-sha256:".count)))
        else {
            throw WireError(.badSignature, "event is not signed by a host")
        }
        guard
            HMAC<SHA256>.isValidAuthenticationCode(
                mac, authenticating: message.envelope.signedBytes(body: message.body),
                using: SymmetricKey(data: keyBytes))
        else {
            throw WireError(
                .badSignature,
                "event signature does not verify with the credential of the host it claims to come from (\(message.envelope.source))"
            )
        }
    }
}
