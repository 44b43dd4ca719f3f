import Crypto

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Random identifiers and secrets.
public enum Identifier {
    private static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)

    /// A new random identifier with a type prefix, e.g. `run_k3v9...` (20 random base-36 characters, ~103 bits).
    public static func make(_ prefix: String) -> String {
        prefix + "_" + randomString(count: 20)
    }

    static func randomString(count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: count)
        for index in bytes.indices {
            bytes[index] = alphabet[Int(generator.next(upperBound: UInt32(alphabet.count)))]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A bearer secret (API token, registration token, host credential) and how it is stored: only the
/// SHA-256 of the secret is kept, so a leaked database does not leak usable tokens.
public struct Secret: Sendable, Hashable {
    /// The secret itself, shown to its owner once.
    public let value: String

    /// A new random secret with a recognisable prefix (`ajt` API token, `ajr` registration token,
    /// `ajh` host credential), 43 random base-36 characters (~222 bits).
    public static func generate(prefix: String) -> Secret {
        Secret(value: prefix + "_" + Identifier.randomString(count: 43))
    }

    public init(value: String) { self.value = value }

    /// The stored form: lowercase hex SHA-256.
    public var hash: String { Secret.hash(value) }

    /// The stored form of a presented secret.
    public static func hash(_ value: String) -> String {
        SHA256.hash(data: Array(value.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
