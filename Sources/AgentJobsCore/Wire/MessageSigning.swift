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

    /// Signs several messages with one Ed25519 signature: over the root of a Merkle tree (RFC 9162
    /// hashing: SHA-256, leaves prefixed 0x00, nodes 0x01) whose leaves are the messages' signed
    /// bytes. Each message's header carries the signature, its leaf index, the batch size and its
    /// inclusion path, so a host verifies it alone, exactly as strongly as a single signature, while
    /// the relay pays for one signature per batch instead of one per message (Ed25519 signing, ~20 µs,
    /// was the relay's largest cost).
    /// - Parameter messages: At least one message.
    /// - Returns: The `agentjobs_signature` value of each message, in order.
    /// - Throws: `CryptoKitError` if signing fails.
    public func batchSignatures(for messages: [(envelope: WireEnvelope, body: [UInt8])]) throws -> [String] {
        try batchSignatures(leaves: messages.map { MerkleTree.leafHash($0.envelope.signedBytes(body: $0.body)) })
            .map { String(decoding: $0, as: UTF8.self) }
    }

    /// ``batchSignatures(for:)`` of messages whose leaf hashes the caller computed, as the header
    /// values' UTF-8 bytes.
    func batchSignatures(leaves: [MerkleTree.Hash]) throws -> [[UInt8]] {
        guard !leaves.isEmpty else { return [] }
        let tree = MerkleTree(leaves: leaves)
        let statement = MerkleTree.signedStatement(root: tree.root, count: leaves.count)
        var prefix = Array("ed25519-batch:".utf8)
        Base64.append(try key.signature(for: statement), to: &prefix)
        prefix.append(UInt8(ascii: ":"))
        let suffix = Array(":\(leaves.count):".utf8)
        var path: [UInt8] = []
        return leaves.indices.map { index in
            path.removeAll(keepingCapacity: true)
            tree.appendPath(for: index, to: &path)
            var value: [UInt8] = []
            value.reserveCapacity(prefix.count + 4 + suffix.count + Base64.encodedCount(path.count))
            value.append(contentsOf: prefix)
            value.append(contentsOf: String(index).utf8)
            value.append(contentsOf: suffix)
            Base64.append(path, to: &value)
            return value
        }
    }
}

/// The Merkle tree of a batch signature: leaves paired level by level, an unpaired last node
/// promoted unchanged, which gives the same root as RFC 9162's split at the largest power of two.
struct MerkleTree {
    /// A SHA-256 hash, held inline: the relay makes two per message, and arrays cost an allocation
    /// each.
    struct Hash: Equatable {
        private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

        init(_ digest: SHA256.Digest) {
            Swift.withUnsafeMutableBytes(of: &words) { target in
                digest.withUnsafeBytes { target.copyMemory(from: $0) }
            }
        }

        /// The hash whose 32 bytes are `bytes`, or nil for another length.
        init?(_ bytes: some Collection<UInt8>) {
            guard bytes.count == 32 else { return nil }
            Swift.withUnsafeMutableBytes(of: &words) { target in
                for (offset, byte) in bytes.enumerated() { target[offset] = byte }
            }
        }

        func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            try Swift.withUnsafeBytes(of: words, body)
        }

        static func == (lhs: Hash, rhs: Hash) -> Bool {
            lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2
                && lhs.words.3 == rhs.words.3
        }
    }

    /// `levels[0]` are the leaf hashes; the last level holds only the root.
    private let levels: [[Hash]]

    /// - Parameter leaves: At least one leaf.
    init(leaves: [Hash]) {
        var levels = [leaves]
        while let level = levels.last, level.count > 1 {
            var next: [Hash] = []
            next.reserveCapacity((level.count + 1) / 2)
            var index = 0
            while index + 1 < level.count {
                next.append(Self.nodeHash(level[index], level[index + 1]))
                index += 2
            }
            if index < level.count { next.append(level[index]) }
            levels.append(next)
        }
        self.levels = levels
    }

    var root: Hash { levels[levels.count - 1][0] }

    /// Appends the sibling hashes from the leaf up to the root (levels where the node is promoted
    /// have none) to `bytes`.
    func appendPath(for leaf: Int, to bytes: inout [UInt8]) {
        var index = leaf
        for level in levels.dropLast() {
            let sibling = index ^ 1
            if sibling < level.count { level[sibling].withUnsafeBytes { bytes.append(contentsOf: $0) } }
            index /= 2
        }
    }

    private static let leafPrefix: [UInt8] = [0x00]
    private static let nodePrefix: [UInt8] = [0x01]

    static func leafHash(_ bytes: [UInt8]) -> Hash {
        leafHash(attributes: bytes, body: [])
    }

    /// `leafHash(attributes + body)`, without joining them.
    static func leafHash(attributes: [UInt8], body: [UInt8]) -> Hash {
        var hasher = SHA256()
        hasher.update(data: leafPrefix)
        hasher.update(data: attributes)
        hasher.update(data: body)
        return Hash(hasher.finalize())
    }

    static func nodeHash(_ left: Hash, _ right: Hash) -> Hash {
        var hasher = SHA256()
        hasher.update(data: nodePrefix)
        left.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        right.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        return Hash(hasher.finalize())
    }

    /// What the Ed25519 signature of a batch covers: a label that no single-message signature
    /// starts with, the batch size, and the root.
    static func signedStatement(root: Hash, count: Int) -> [UInt8] {
        var statement = Array("agentjobs-dispatch-batch-v1\n\(count)\n".utf8)
        root.withUnsafeBytes { statement.append(contentsOf: $0) }
        return statement
    }

    /// The root that `path` leads to from `leaf` at `index` of `count` leaves (RFC 9162 §2.1.3.2),
    /// or nil when the path does not fit the position.
    static func root(leaf: Hash, index: Int, count: Int, path: [Hash]) -> Hash? {
        guard index >= 0, index < count else { return nil }
        var fn = index
        var sn = count - 1
        var hash = leaf
        for sibling in path {
            guard sn != 0 else { return nil }
            if fn & 1 == 1 || fn == sn {
                hash = nodeHash(sibling, hash)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 {
                        fn >>= 1
                        sn >>= 1
                    }
                }
            } else {
                hash = nodeHash(hash, sibling)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 ? hash : nil
    }
}

/// Standard base64 with padding (RFC 4648 §4, what `Data.base64EncodedString()` writes), appended
/// to a byte buffer: signature headers are bytes, and Foundation's encoder went through `Data` and
/// a `String` for each of them.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encodedCount(_ count: Int) -> Int { (count + 2) / 3 * 4 }

    static func append(_ bytes: some DataProtocol, to output: inout [UInt8]) {
        let input = Array(bytes)
        append(input, to: &output)
    }

    static func append(_ input: [UInt8], to output: inout [UInt8]) {
        let start = output.count
        let count = encodedCount(input.count)
        output.append(contentsOf: repeatElement(UInt8(ascii: "="), count: count))
        input.withUnsafeBufferPointer { input in
            alphabet.withUnsafeBufferPointer { alphabet in
                output.withUnsafeMutableBufferPointer { output in
                    var target = start
                    /// Writes the first `characters` of the four 6-bit digits of a 24-bit group.
                    func emit(_ group: UInt32, _ characters: Int) {
                        for digit in 0..<characters {
                            output[target] = alphabet[Int(group >> UInt32(18 - 6 * digit) & 0x3F)]
                            target += 1
                        }
                    }
                    var index = 0
                    while index + 3 <= input.count {
                        emit(UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2]), 4)
                        index += 3
                    }
                    // The padding is already in place.
                    switch input.count - index {
                    case 1: emit(UInt32(input[index]) << 16, 2)
                    case 2: emit(UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8, 3)
                    default: break
                    }
                }
            }
        }
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
    /// Accepts both forms the control plane writes: `ed25519:<signature>` over the message, and
    /// `ed25519-batch:<signature>:<index>:<count>:<path>` over the root of a batch the message is in.
    public func verify(_ message: WireMessage) throws(WireError) {
        guard let header = message.signature else {
            throw WireError(.badSignature, "dispatch command is not signed by the control plane")
        }
        let signedBytes = message.envelope.signedBytes(body: message.body)
        let signature: Data?
        let statement: [UInt8]?
        if header.hasPrefix("ed25519:") {
            signature = Data(base64Encoded: String(header.dropFirst("ed25519:".count)))
            statement = signedBytes
        } else if header.hasPrefix("ed25519-batch:") {
            let fields = header.dropFirst("ed25519-batch:".count).split(
                separator: ":", omittingEmptySubsequences: false)
            guard fields.count == 4, let index = Int(fields[1]), let count = Int(fields[2]), count >= 1,
                let pathBytes = Data(base64Encoded: String(fields[3])), pathBytes.count % 32 == 0
            else {
                throw WireError(.badSignature, "dispatch command carries a malformed batch signature")
            }
            let path = stride(from: 0, to: pathBytes.count, by: 32).compactMap {
                MerkleTree.Hash(pathBytes[$0..<($0 + 32)])
            }
            signature = Data(base64Encoded: String(fields[0]))
            statement = MerkleTree.root(
                leaf: MerkleTree.leafHash(signedBytes), index: index, count: count, path: path
            ).map { MerkleTree.signedStatement(root: $0, count: count) }
        } else {
            throw WireError(.badSignature, "dispatch command is not signed by the control plane")
        }
        guard let signature, let statement, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: rawKey),
            key.isValidSignature(signature, for: statement)
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
    /// An HMAC already keyed with `keyBytes`: each message's MAC starts from a copy of it instead of
    /// hashing the key's pads again (the aggregator verifies every event).
    private let keyed: KeyedHMAC

    /// Holds the keyed HMAC, which is not `Sendable`. It is immutable after `init`; each MAC works on
    /// a copy (a value with copy-on-write state), so sharing it between threads is safe.
    private final class KeyedHMAC: @unchecked Sendable {
        let hmac: HMAC<SHA256>
        init(_ hmac: HMAC<SHA256>) { self.hmac = hmac }
    }

    /// The key of the host holding `credential`.
    public init(credential: String) { self.init(keyBytes: Array(Secret.hash(credential).utf8)) }

    /// The key of the host whose stored credential hash is `credentialHash`.
    public init(credentialHash: String) { self.init(keyBytes: Array(credentialHash.utf8)) }

    /// Stands for a revoked host: nothing verifies with it.
    public static let revoked = HostEventKey(keyBytes: Array("revoked".utf8), revoked: true)

    /// Whether this stands for a revoked host (its messages are refused as `revoked_host`).
    public let revoked: Bool

    private init(keyBytes: [UInt8], revoked: Bool = false) {
        self.keyBytes = keyBytes
        self.revoked = revoked
        keyed = KeyedHMAC(HMAC<SHA256>(key: SymmetricKey(data: keyBytes)))
    }

    public static func == (lhs: HostEventKey, rhs: HostEventKey) -> Bool { lhs.keyBytes == rhs.keyBytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(keyBytes) }

    /// The MAC of a message: over ``WireEnvelope/signedBytes(body:)``, fed in two parts.
    private func mac(envelope: WireEnvelope, body: [UInt8]) -> HMAC<SHA256>.MAC {
        var hmac = keyed.hmac
        hmac.update(data: envelope.signedAttributes())
        hmac.update(data: body)
        return hmac.finalize()
    }

    /// The `agentjobs_signature` header value for a message.
    public func signature(envelope: WireEnvelope, body: [UInt8]) -> String {
        "hmac-sha256:" + Data(mac(envelope: envelope, body: body)).base64EncodedString()
    }

    /// The message with its body signed by this key.
    public func signedMessage(topic: String, envelope: WireEnvelope, body: [UInt8]) -> OutgoingMessage {
        OutgoingMessage(
            topic: topic, envelope: envelope, body: body, signature: signature(envelope: envelope, body: body))
    }

    /// Whether `message` carries this host's signature.
    /// - Throws: ``WireError`` `badSignature` when it is missing, malformed or wrong.
    public func verify(_ message: WireMessage) throws(WireError) {
        if revoked { throw WireError(.revokedHost, "the sender's credential was revoked") }
        guard let header = message.signature, header.hasPrefix("hmac-sha256:"),
            let mac = Data(base64Encoded: String(header.dropFirst("hmac-sha256:".count)))
        else {
            throw WireError(.badSignature, "event is not signed by a host")
        }
        // `==` of a MAC with bytes compares in constant time.
        guard self.mac(envelope: message.envelope, body: message.body) == mac else {
            throw WireError(
                .badSignature,
                "event signature does not verify with the credential of the host it claims to come from (\(message.envelope.source))"
            )
        }
    }
}
