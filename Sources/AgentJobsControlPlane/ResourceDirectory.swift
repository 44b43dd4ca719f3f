import Foundation

/// Where the control plane's files (the console, the OpenAPI document) are at run time: the
/// SwiftPM resource bundle `agentjobs_AgentJobsControlPlane.resources` in the directory of the
/// running executable, symlinks resolved — where `swift build` puts it, and where the image and a
/// package install it (next to the binary, which `/usr/bin/agentjobs` may link to).
///
/// SwiftPM's generated `Bundle.module` is not used: it stops the process (`fatalError`) when the
/// bundle is missing, and a binary copied without it must still serve the API, with the console
/// answering 503 and the reason.
enum ResourceDirectory {
    static let bundleName = "agentjobs_AgentJobsControlPlane.resources"

    /// `Resources/` inside the bundle, or nil when no bundle is found.
    static let url: URL? = {
        var candidates: [URL] = []
        // The real file of the running executable (Linux), then what Foundation calls the main bundle.
        let proc = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        if proc.path != "/proc/self/exe" { candidates.append(proc.deletingLastPathComponent()) }
        if let executable = Bundle.main.executableURL?.resolvingSymlinksInPath() {
            candidates.append(executable.deletingLastPathComponent())
        }
        candidates.append(Bundle.main.bundleURL)
        for directory in candidates {
            let resources = directory.appendingPathComponent(bundleName).appendingPathComponent("Resources")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: resources.path, isDirectory: &isDirectory), isDirectory.boolValue
            {
                return resources
            }
        }
        return nil
    }()

    /// Where the bundle was looked for, for the message when it is missing.
    static var expectedLocation: String {
        let proc = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return proc.deletingLastPathComponent().appendingPathComponent(bundleName).path
    }
}
