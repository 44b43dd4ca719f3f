import AgentJobsCore
import Foundation

/// The control plane's dispatch-signing key on disk: the Ed25519 private key in base64, mode 0600.
///
/// Every `serve` replica must use the same key (hosts verify dispatch commands with its public
/// half), so in the distributed shape give each replica the same file; `serve` creates one only
/// when the file does not exist yet.
enum SigningKeyFile {
    /// Reads the key at `path`, creating a new one there when the file does not exist.
    /// - Throws: ``CLIError`` naming `setting` when the file cannot be read, parsed or written.
    static func loadOrCreate(path: String, setting: String) throws -> (DispatchSigningKey, created: Bool) {
        if FileManager.default.fileExists(atPath: path) {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw CLIError("\(setting): cannot read \(path): \(error.localizedDescription)")
            }
            guard let raw = Data(base64Encoded: text), let key = try? DispatchSigningKey(rawRepresentation: Array(raw))
            else {
                throw CLIError("\(setting): \(path) does not hold a base64 Ed25519 private key")
            }
            return (key, false)
        }
        let key = DispatchSigningKey()
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        do {
            if !FileManager.default.fileExists(atPath: directory.path) { try PrivateFiles.directory(directory.path) }
            try PrivateFiles.write(Array((Data(key.rawRepresentation).base64EncodedString() + "\n").utf8), to: path)
        } catch {
            throw CLIError("\(setting): cannot create \(path): \(error)")
        }
        return (key, true)
    }
}
