import Foundation

/// Looks for processes whose command line or environment mentions a string (a run id).
public enum ProcessTable {
    public static func processes(mentioning text: String) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        let needle = Data(text.utf8)
        return entries.compactMap(Int32.init).filter { pid in
            for file in ["cmdline", "environ"] {
                if let data = FileManager.default.contents(atPath: "/proc/\(pid)/\(file)"),
                    data.range(of: needle) != nil
                {
                    return true
                }
            }
            return false
        }
    }

    /// Kills (SIGKILL) every process mentioning `text`, e.g. agents a test's server left running.
    public static func killAll(mentioning text: String) {
        for pid in processes(mentioning: text) where pid != getpid() { kill(pid, SIGKILL) }
    }
}
