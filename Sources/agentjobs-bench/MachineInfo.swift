import AgentJobsSQLite
import Foundation

/// The machine a benchmark ran on, so that its figures can be compared with others.
struct MachineInfo: Codable, Sendable {
    var cpuModel: String
    var logicalCores: Int
    var memoryBytes: Int64
    var kernel: String
    /// The compiler version this binary was built with (from `#if compiler`).
    var swiftCompiler: String
    /// The first line of `swift --version`, when a toolchain is on the PATH.
    var swiftToolchain: String?
    var buildConfiguration: String
    var sqliteVersion: String
    /// File system type and device of the directory holding the benchmark's databases.
    var dataFilesystem: String

    /// Reads the machine's description from `/proc` and the toolchain.
    /// - Parameter dataDirectory: Where the benchmark's databases live (its file system matters for fsync).
    static func collect(dataDirectory: URL) async -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let cpuModel =
            cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let memoryKiB =
            meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ").dropFirst().first }
            .flatMap { Int64($0) } ?? 0
        let kernel = [readLine("/proc/sys/kernel/ostype"), readLine("/proc/sys/kernel/osrelease")]
            .compactMap { $0 }.joined(separator: " ")
        return MachineInfo(
            cpuModel: cpuModel, logicalCores: ProcessInfo.processInfo.activeProcessorCount,
            memoryBytes: memoryKiB * 1024, kernel: kernel.isEmpty ? "unknown" : kernel,
            swiftCompiler: compilerVersion, swiftToolchain: await toolchainVersion(),
            buildConfiguration: buildConfiguration, sqliteVersion: SQLiteConnection.libraryVersion,
            dataFilesystem: filesystem(of: dataDirectory.path))
    }

    /// The machine as the report's first section.
    var text: String {
        [
            "Machine",
            reportLine("CPU", "\(cpuModel), \(logicalCores) logical cores"),
            reportLine("memory", "\(formatFixed(Double(memoryBytes) / Double(1 << 30), 1)) GiB"),
            reportLine("kernel", kernel),
            reportLine("Swift", "\(swiftToolchain ?? "toolchain not on PATH") (built with compiler \(swiftCompiler))"),
            reportLine("build configuration", buildConfiguration),
            reportLine("SQLite", "\(sqliteVersion); databases on \(dataFilesystem)"),
        ].joined(separator: "\n")
    }

    static var buildConfiguration: String {
        #if DEBUG
            return "debug"
        #else
            return "release"
        #endif
    }

    private static var compilerVersion: String {
        #if compiler(>=6.5)
            return ">= 6.5"
        #elseif compiler(>=6.4)
            return "6.4"
        #elseif compiler(>=6.3)
            return "6.3"
        #elseif compiler(>=6.2)
            return "6.2"
        #else
            return "< 6.2"
        #endif
    }

    private static func readLine(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `swift --version`, run off the cooperative pool; nil when no toolchain is found.
    private static func toolchainVersion() async -> String? {
        try? await offPool { () -> String? in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [ProcessInfo.processInfo.environment["SWIFT"] ?? "swift", "--version"]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { return nil }
            return String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init)
        }
    }

    /// The type and device of the mount holding `path` (longest matching mount point in /proc/mounts).
    private static func filesystem(of path: String) -> String {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let mounts = procText("/proc/mounts") ?? ""
        var best: (mountPoint: String, description: String)?
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let mountPoint = String(fields[1])
            let contains =
                mountPoint == "/" || resolved == mountPoint || resolved.hasPrefix(mountPoint + "/")
            if contains, mountPoint.count >= (best?.mountPoint.count ?? -1) {
                best = (mountPoint, "\(fields[2]) on \(fields[0]) mounted at \(mountPoint)")
            }
        }
        return best?.description ?? "unknown"
    }
}

/// Runs blocking work (C calls, child-process I/O) on a Dispatch thread, never on the Swift
/// cooperative pool.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}
