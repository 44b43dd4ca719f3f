import AgentJobsCore
import AgentJobsStore
import PostgresNIO

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension PostgresStore {
    /// Where the PostgreSQL database is and how to reach it. Its `description` never shows the password.
    public struct Configuration: Sendable, Hashable, CustomStringConvertible {
        /// Whether and how connections use TLS; named and meant as libpq's `sslmode` values.
        public enum TLS: String, Sendable, Hashable, CaseIterable {
            /// Plain TCP (`sslmode=disable`): only on a network you trust.
            case disable
            /// TLS when the server offers it, else plain TCP; the certificate is not verified
            /// (`sslmode=prefer`, libpq's default). Encrypts against a passive listener only.
            case prefer
            /// TLS or no connection; the certificate is not verified (`sslmode=require`).
            case require
            /// TLS or no connection; the certificate must chain to a trusted root (`sslmode=verify-ca`).
            case verifyCA = "verify-ca"
            /// TLS or no connection; the certificate must chain to a trusted root and name the host
            /// (`sslmode=verify-full`).
            case verifyFull = "verify-full"
        }

        public var host: String
        public var port: Int
        public var username: String
        public var password: String?
        /// The database; `nil` for the server's default (the user's name).
        public var database: String?
        public var tls: TLS
        /// The most connections the store's pool opens.
        public var maximumConnections: Int
        /// How long one operation of the store may take before it is given up: its connection is
        /// closed and the caller gets ``StoreError/Code/unavailable`` (``PostgresStore/Limit``).
        public var operationLimit: Duration = .seconds(60)

        public static let defaultPort = 5432
        public static let defaultMaximumConnections = 10
        /// The largest `pool_size` a URL may ask for.
        public static let maximumPoolSize = 1000

        public init(
            host: String, port: Int = Configuration.defaultPort, username: String, password: String?,
            database: String?, tls: TLS = .prefer, maximumConnections: Int = Configuration.defaultMaximumConnections
        ) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.tls = tls
            self.maximumConnections = maximumConnections
        }

        /// Parses a URL of the form `postgres://USER[:PASSWORD]@HOST[:PORT][/DATABASE][?PARAMETERS]`
        /// (also `postgresql://`). User, password and database are percent-decoded; an IPv6 host is
        /// written in brackets. Parameters: `sslmode` (`disable`, `prefer` — the default —,
        /// `require`, `verify-ca`, `verify-full`) and `pool_size` (1 to ``maximumPoolSize``,
        /// default ``defaultMaximumConnections``).
        /// - Parameters:
        ///   - url: The URL.
        ///   - passwordFile: A file holding the password (surrounding whitespace is trimmed), read
        ///     when the URL has none, so that the password need not appear in the environment.
        /// - Throws: ``StoreError`` with code `unavailable` that names what is wrong; its message
        ///   never contains the password.
        public init(url: String, passwordFile: String?) throws {
            let text = url.trimmingWhitespace()
            guard let rest = Self.dropScheme(text) else {
                throw Self.invalid("it does not start with postgres:// or postgresql://")
            }
            // The user information ends at the last '@', so that a password with an unescaped '@'
            // or '/' still parses.
            guard let at = rest.lastIndex(of: "@") else {
                throw Self.invalid("it names no user; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
            }
            let userInfo = rest[..<at]
            let afterAt = rest[rest.index(after: at)...]
            let (location, query) = Self.split(afterAt, at: "?")
            let (hostAndPort, path) = Self.split(location, at: "/")

            let (rawUser, rawPassword) = Self.split(userInfo, at: ":")
            let username = try Self.percentDecoded(rawUser, "the user name")
            guard !username.isEmpty else { throw Self.invalid("the user name is empty") }
            var password = try rawPassword.map { try Self.percentDecoded($0, "the password") }

            let (host, port) = try Self.hostAndPort(hostAndPort)
            let database = try path.map { try Self.percentDecoded($0, "the database name") }.flatMap {
                $0.isEmpty ? nil : $0
            }

            var tls = TLS.prefer
            var poolSize = Self.defaultMaximumConnections
            for parameter in (query ?? "").split(separator: "&") where !parameter.isEmpty {
                let (rawName, rawValue) = Self.split(parameter, at: "=")
                let name = try Self.percentDecoded(rawName, "a parameter name")
                let value = try Self.percentDecoded(rawValue ?? "", "the value of \(name)")
                switch name {
                case "sslmode":
                    guard let mode = TLS(rawValue: value) else {
                        throw Self.invalid(
                            "sslmode=\(value) is not supported; use disable, prefer, require, verify-ca or verify-full")
                    }
                    tls = mode
                case "pool_size":
                    guard let size = Int(value), (1...Self.maximumPoolSize).contains(size) else {
                        throw Self.invalid("pool_size=\(value) is not a whole number from 1 to \(Self.maximumPoolSize)")
                    }
                    poolSize = size
                default:
                    throw Self.invalid("the parameter '\(name)' is not supported; supported: sslmode, pool_size")
                }
            }

            if password == nil, let passwordFile {
                password = try Self.readPassword(passwordFile)
            }
            self.init(
                host: host, port: port, username: username, password: password, database: database, tls: tls,
                maximumConnections: poolSize)
        }

        /// The URL without the password.
        public var description: String {
            var text = "postgres://\(username)\(password == nil ? "" : ":***")@\(target)"
            text += "?sslmode=\(tls.rawValue)&pool_size=\(maximumConnections)"
            return text
        }

        /// `HOST:PORT/DATABASE`, for messages.
        var target: String {
            let hostText = host.contains(":") ? "[\(host)]" : host
            return "\(hostText):\(port)/\(database ?? "")"
        }

        /// The TLS settings `sslmode` stands for: `nil` for `disable`; `prefer` and `require` verify
        /// no certificate (as in libpq), `verify-ca` the chain, `verify-full` also the host name.
        private var tlsConfiguration: TLSConfiguration? {
            var configuration = TLSConfiguration.makeClientConfiguration()
            switch tls {
            case .disable: return nil
            case .prefer, .require: configuration.certificateVerification = .none
            case .verifyCA: configuration.certificateVerification = .noHostnameVerification
            case .verifyFull: configuration.certificateVerification = .fullVerification
            }
            return configuration
        }

        /// The configuration of postgres-nio's client.
        var clientConfiguration: PostgresClient.Configuration {
            let clientTLS: PostgresClient.Configuration.TLS =
                tlsConfiguration.map { tls == .prefer ? .prefer($0) : .require($0) } ?? .disable
            var configuration = PostgresClient.Configuration(
                host: host, port: port, username: username, password: password, database: database, tls: clientTLS)
            configuration.options.maximumConnections = maximumConnections
            configuration.options.additionalStartupParameters = Self.sessionSettings
            return configuration
        }

        /// Every session's bounds: a lock held by a replica cut off mid-transaction is released by the
        /// server within a minute (`idle_in_transaction_session_timeout`), and a statement waits at
        /// most 10 s for a row lock (`lock_timeout`, then a retried `unavailable`) instead of
        /// stalling its caller, and its SIGTERM, behind that replica.
        static let sessionSettings = [("lock_timeout", "10s"), ("idle_in_transaction_session_timeout", "60s")]

        /// The same settings for one connection outside the pool.
        /// - Throws: When the TLS context cannot be made.
        func connectionConfiguration() throws -> PostgresConnection.Configuration {
            var connectionTLS: PostgresConnection.Configuration.TLS = .disable
            if let tlsConfiguration {
                let context = try NIOSSLContext(configuration: tlsConfiguration)
                connectionTLS = tls == .prefer ? .prefer(context) : .require(context)
            }
            return PostgresConnection.Configuration(
                host: host, port: port, username: username, password: password, database: database, tls: connectionTLS)
        }

        // MARK: Parsing

        private static func invalid(_ problem: String) -> StoreError {
            StoreError(.unavailable, "the PostgreSQL URL is invalid: \(problem)")
        }

        private static func dropScheme(_ text: String) -> Substring? {
            for scheme in ["postgres://", "postgresql://"] where text.hasPrefix(scheme) {
                return text.dropFirst(scheme.count)
            }
            return nil
        }

        /// The text before the first `separator` and, when there is one, the text after it.
        private static func split(_ text: Substring, at separator: Character) -> (Substring, Substring?) {
            guard let index = text.firstIndex(of: separator) else { return (text, nil) }
            return (text[..<index], text[text.index(after: index)...])
        }

        private static func hostAndPort(_ text: Substring) throws -> (String, Int) {
            let host: Substring
            var portText: Substring? = nil
            if text.first == "[" {
                // [IPv6]:PORT
                guard let close = text.firstIndex(of: "]") else {
                    throw invalid("the IPv6 host '\(text)' has no closing ']'")
                }
                host = text[text.index(after: text.startIndex)..<close]
                let after = text[text.index(after: close)...]
                if !after.isEmpty {
                    guard after.first == ":" else { throw invalid("unexpected '\(after)' after the host") }
                    portText = after.dropFirst()
                }
            } else {
                let parts = split(text, at: ":")
                host = parts.0
                portText = parts.1
            }
            let decodedHost = try percentDecoded(host, "the host")
            guard !decodedHost.isEmpty else { throw invalid("it names no host") }
            guard let portText else { return (decodedHost, defaultPort) }
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw invalid("the port '\(portText)' is not a number from 1 to 65535")
            }
            return (decodedHost, port)
        }

        /// `text` with its `%XX` escapes decoded, as UTF-8.
        /// - Parameter what: What the text is, for the message (which never repeats the text: it may
        ///   be the password).
        private static func percentDecoded(_ text: Substring, _ what: String) throws -> String {
            guard text.contains("%") else { return String(text) }
            let utf8 = Array(text.utf8)
            var bytes: [UInt8] = []
            bytes.reserveCapacity(utf8.count)
            var index = 0
            while index < utf8.count {
                guard utf8[index] == UInt8(ascii: "%") else {
                    bytes.append(utf8[index])
                    index += 1
                    continue
                }
                guard index + 2 < utf8.count, let high = hexValue(utf8[index + 1]), let low = hexValue(utf8[index + 2])
                else {
                    throw invalid("\(what) has a '%' that is not followed by two hexadecimal digits")
                }
                bytes.append(high << 4 | low)
                index += 3
            }
            guard let decoded = String(validating: bytes, as: UTF8.self) else {
                throw invalid("\(what) is not UTF-8 once its %-escapes are decoded")
            }
            return decoded
        }

        private static func hexValue(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
            default: return nil
            }
        }

        /// The password in `path`, without surrounding whitespace.
        private static func readPassword(_ path: String) throws -> String {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw StoreError(.unavailable, "cannot read the PostgreSQL password file \(path): \(error)")
            }
            guard let text = String(validating: Array(data), as: UTF8.self) else {
                throw StoreError(.unavailable, "the PostgreSQL password file \(path) is not UTF-8 text")
            }
            let password = text.trimmingWhitespace()
            guard !password.isEmpty else {
                throw StoreError(.unavailable, "the PostgreSQL password file \(path) is empty")
            }
            return password
        }
    }
}
