import AgentJobsCore
import AgentJobsKafka
import AgentJobsStore
import ArgumentParser
import Foundation
import Logging

/// The settings file and database flags every role that opens the database takes.
struct DatabaseOptions: ParsableArguments {
    @Option(help: "Settings file of AGENTJOBS_NAME=value lines (env AGENTJOBS_CONFIG).")
    var config: String?
    @Option(
        help:
            "Database URL: sqlite:/var/lib/agentjobs/agentjobs.sqlite or postgres://USER@HOST:5432/DATABASE (env AGENTJOBS_DATABASE_URL)."
    )
    var databaseURL: String?

    /// The settings, with `--database-url` applied.
    func settings() throws -> Settings {
        var settings = try Settings.load(configFile: config)
        settings.override("AGENTJOBS_DATABASE_URL", with: databaseURL, flagName: "--database-url")
        return settings
    }

    func store() async throws -> any Store { try await openStore(try settings()) }
}

/// The configuration of a server role: a settings file (`--config FILE` or `AGENTJOBS_CONFIG`,
/// lines of `NAME=value`, the same names as the environment variables, so one file works as a
/// systemd `EnvironmentFile` too), overridden by the environment, overridden by command-line flags.
/// See docs/configuration.md.
struct Settings {
    private var values: [String: String]
    /// Where each value came from, for error messages.
    private var origins: [String: String]

    /// Reads the settings file (if any) and the environment.
    /// - Throws: ``CLIError`` naming the file and line when it cannot be read or parsed.
    static func load(configFile: String?) throws -> Settings {
        let environment = ProcessInfo.processInfo.environment
        var settings = Settings(values: [:], origins: [:])
        if let path = configFile ?? environment["AGENTJOBS_CONFIG"] {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw CLIError("--config: cannot read \(path): \(error.localizedDescription)")
            }
            for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = rawLine.trimmingCharacters(in: .whitespaces)
                if line.isEmpty || line.hasPrefix("#") { continue }
                guard let equals = line.firstIndex(of: "="), line[..<equals].hasPrefix("AGENTJOBS_") else {
                    throw CLIError("\(path):\(index + 1): expected AGENTJOBS_NAME=value")
                }
                var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                    value = String(value.dropFirst().dropLast())
                }
                let name = line[..<equals].trimmingCharacters(in: .whitespaces)
                settings.values[name] = value
                settings.origins[name] = "\(name) (from \(path))"
            }
        }
        for (name, value) in environment where name.hasPrefix("AGENTJOBS_") {
            settings.values[name] = value
            settings.origins[name] = name
        }
        return settings
    }

    /// Sets a value from a command-line flag, which wins over the file and the environment.
    mutating func override(_ name: String, with flag: String?, flagName: String) {
        guard let flag else { return }
        values[name] = flag
        origins[name] = flagName
    }

    subscript(_ name: String) -> String? { values[name].flatMap { $0.isEmpty ? nil : $0 } }

    /// How to name a setting in an error: the flag or variable (and file) it came from.
    func origin(_ name: String) -> String { origins[name] ?? name }

    /// A required value.
    /// - Throws: ``CLIError`` naming the setting when it is missing.
    func required(_ name: String, hint: String) throws -> String {
        guard let value = self[name] else { throw CLIError("\(name) is not set; \(hint)") }
        return value
    }

    /// A positive number of seconds.
    /// - Throws: ``CLIError`` naming the setting when it is not a positive number.
    func seconds(_ name: String, default defaultValue: Double) throws -> Duration {
        guard let text = self[name] else { return .milliseconds(Int64(defaultValue * 1000)) }
        guard let value = Double(text), value > 0 else {
            throw CLIError("\(origin(name)): '\(text)' is not a positive number of seconds")
        }
        return .milliseconds(Int64(value * 1000))
    }

    /// `AGENTJOBS_HOST_LOST_AFTER_SECONDS` (300 s): how long a host is silent before its running
    /// runs fail; never shorter than the offline grace.
    func runsLostAfter(grace: Duration) throws -> Duration {
        let name = "AGENTJOBS_HOST_LOST_AFTER_SECONDS"
        let value = try seconds(name, default: max(300, grace.seconds))
        guard value >= grace else {
            throw CLIError(
                "\(origin(name)): \(value) is shorter than AGENTJOBS_HOST_OFFLINE_GRACE_SECONDS (\(grace)); running runs are given up only after a host is offline"
            )
        }
        return value
    }

    /// A positive integer.
    func integer(_ name: String, default defaultValue: Int) throws -> Int {
        guard let text = self[name] else { return defaultValue }
        guard let value = Int(text), value > 0 else {
            throw CLIError("\(origin(name)): '\(text)' is not a positive integer")
        }
        return value
    }

    /// A whole number in `range` (0 allowed when the range has it).
    /// - Throws: ``CLIError`` naming the setting and the range for anything else.
    func integer(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = self[name] else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw CLIError(
                "\(origin(name)): '\(text)' is not a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// A listening address, `HOST:PORT` (port 0 picks a free one; an empty host listens on every
    /// interface).
    /// - Throws: ``CLIError`` naming the setting for a value that is not `HOST:PORT`.
    func address(_ name: String, default defaultValue: String) throws -> (host: String, port: Int) {
        let address = self[name] ?? defaultValue
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw CLIError("\(origin(name)): '\(address)' is not HOST:PORT")
        }
        let host = String(address[..<colon])
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    /// The data directory (`AGENTJOBS_DATA_DIR`), created if missing.
    func dataDirectory(default defaultPath: String) throws -> URL {
        let directory = URL(fileURLWithPath: self["AGENTJOBS_DATA_DIR"] ?? defaultPath).standardizedFileURL
        do {
            // It holds the database, tokens and keys: private to the service user.
            try PrivateFiles.directory(directory.path)
        } catch {
            throw CLIError("\(origin("AGENTJOBS_DATA_DIR")): \(error)")
        }
        return directory
    }

    /// The Kafka client settings: `AGENTJOBS_KAFKA_BROKERS` plus every `AGENTJOBS_KAFKA_<PROPERTY>`
    /// passed to librdkafka as `<property>` (lower-cased, `_` → `.`), e.g.
    /// `AGENTJOBS_KAFKA_SECURITY_PROTOCOL=SASL_SSL` → `security.protocol=SASL_SSL`.
    /// - Throws: ``CLIError`` when no brokers are configured.
    func kafkaClient(clientID: String) throws -> KafkaClientConfiguration {
        let brokers = try required(
            "AGENTJOBS_KAFKA_BROKERS", hint: "set it to the Kafka bootstrap servers, e.g. kafka-1:9092,kafka-2:9092"
        ).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var properties: [String: String] = [:]
        for (name, value) in values where name.hasPrefix("AGENTJOBS_KAFKA_") && name != "AGENTJOBS_KAFKA_BROKERS" {
            let property = name.dropFirst("AGENTJOBS_KAFKA_".count).lowercased().replacingOccurrences(
                of: "_", with: ".")
            properties[property] = value
        }
        return KafkaClientConfiguration(bootstrapServers: brokers, clientID: clientID, properties: properties)
    }
}
