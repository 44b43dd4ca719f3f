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

    /// A new identifier that sorts by creation time: 9 base-36 characters of milliseconds since 1970
    /// (good until the year 5188), then 11 random ones (~57 bits, drawn anew every millisecond).
    ///
    /// Runs use these so that the entries a burst of triggers adds to the `runs.id` and
    /// `outbox.run_id` indexes land on the same right-most pages instead of on random ones: a group
    /// commit then writes a few pages instead of a few per trigger.
    public static func makeTimeOrdered(_ prefix: String, at date: Date) -> String {
        let milliseconds = UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded()))
        var time = [UInt8](repeating: alphabet[0], count: timeDigits)
        var rest = milliseconds
        for position in stride(from: timeDigits - 1, through: 0, by: -1) {
            time[position] = alphabet[Int(rest % 36)]
            rest /= 36
        }
        return prefix + "_" + String(decoding: time, as: UTF8.self) + randomString(count: 20 - timeDigits)
    }

    private static let timeDigits = 9

    /// `count` uniformly random base-36 characters from one draw of the system's secure generator
    /// (rather than one draw per character): bytes of 252 and above are skipped, so that `byte % 36`
    /// is uniform.
    static func randomString(count: Int) -> String {
        var characters: [UInt8] = []
        characters.reserveCapacity(count)
        while characters.count < count {
            // 8 spare bytes make a second draw rare (each byte is skipped with probability 4/256).
            let pool = SymmetricKey(size: SymmetricKeySize(bitCount: (count - characters.count + 8) * 8))
            pool.withUnsafeBytes { bytes in
                for byte in bytes where byte < 252 && characters.count < count {
                    characters.append(alphabet[Int(byte % 36)])
                }
            }
        }
        return String(decoding: characters, as: UTF8.self)
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
