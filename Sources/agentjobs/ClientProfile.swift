import Foundation

/// A profile of the client settings file (`~/.config/agentjobs/config`): where one control plane is
/// and how to authenticate to it, so that several can be used by name (`--profile staging`).
///
/// ```
/// # ~/.config/agentjobs/config
/// [default]
/// url = https://agentjobs.example.com
/// token-file = ~/.config/agentjobs/prod.token
///
/// [staging]
/// url = https://agentjobs.staging.example.com
/// token = ajt_…
/// ```
struct ClientProfile {
    var url: String?
    var token: String?
    var tokenFile: String?

    /// The settings file: `AGENTJOBS_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/agentjobs/config`, else
    /// `~/.config/agentjobs/config`.
    static func path(_ environment: [String: String]) -> String {
        if let path = environment["AGENTJOBS_CLIENT_CONFIG"], !path.isEmpty { return path }
        if let base = environment["XDG_CONFIG_HOME"], !base.isEmpty { return base + "/agentjobs/config" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.config/agentjobs/config"
    }

    /// The profile `name` (`default` when nil) of the settings file, or nil when there is no file and
    /// no profile was asked for by name.
    /// - Throws: ``CLIError`` (usage) for a profile asked for that does not exist, a line that is not
    ///   `[name]` or `key = value`, an unknown key, or a file holding a token that others may read.
    static func load(name: String?, environment: [String: String]) throws -> ClientProfile? {
        let path = path(environment)
        guard let data = FileManager.default.contents(atPath: path) else {
            guard let name else { return nil }
            throw CLIError("no profile '\(name)': \(path) does not exist", status: ExitStatus.usage)
        }
        let wanted = name ?? "default"
        var profiles: [String: ClientProfile] = [:]
        var current: String?
        for (index, rawLine) in String(decoding: data, as: UTF8.self).split(
            separator: "\n", omittingEmptySubsequences: false
        ).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            func failure(_ message: String) -> CLIError {
                CLIError("\(path):\(index + 1): \(message)", status: ExitStatus.usage)
            }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), line.count > 2 else { throw failure("expected [profile-name]") }
                let section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                current = section
                if profiles[section] == nil { profiles[section] = ClientProfile() }
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { throw failure("expected key = value") }
            guard let section = current else { throw failure("a setting before the first [profile-name]") }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "url": profiles[section]?.url = value
            case "token": profiles[section]?.token = value
            case "token-file": profiles[section]?.tokenFile = value
            default: throw failure("unknown setting '\(key)' (known: url, token, token-file)")
            }
        }
        guard let profile = profiles[wanted] else {
            if name == nil { return nil }
            let known = profiles.keys.sorted().joined(separator: ", ")
            throw CLIError(
                "no profile '\(wanted)' in \(path) (profiles: \(known.isEmpty ? "none" : known))",
                status: ExitStatus.usage)
        }
        if profiles.values.contains(where: { $0.token != nil }) {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            if let mode = (attributes?[.posixPermissions] as? NSNumber)?.intValue, mode & 0o077 != 0 {
                throw CLIError(
                    "\(path) holds a token and others may read it; run: chmod 600 \(path)", status: ExitStatus.usage)
            }
        }
        return profile
    }

    /// The profile's token: `token`, else the contents of `token-file` (`~` is the home directory).
    func resolvedToken(_ environment: [String: String]) throws -> String? {
        if let token { return token }
        guard var file = tokenFile else { return nil }
        if file.hasPrefix("~/") { file = (environment["HOME"] ?? NSHomeDirectory()) + file.dropFirst() }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw CLIError("token-file: cannot read \(file)", status: ExitStatus.unauthorized)
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
