import Foundation

/// CPU time read from `/proc`: the machine's busy and total time, and one or two processes'.
///
/// On a 2-core machine shared with the load generator (and other users), these say where the
/// cores went during a phase: the server, the load generator, or something else.
struct CPUSample: Sendable {
    /// Jiffies summed over all cores, and the non-idle part of them.
    var machineTotal: Int64
    var machineBusy: Int64
    /// user + system jiffies of each process, by pid.
    var processes: [Int32: Int64]

    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    static func take(pids: [Int32]) -> CPUSample {
        var sample = CPUSample(machineTotal: 0, machineBusy: 0, processes: [:])
        if let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ")
        {
            // user nice system idle iowait irq softirq steal (guest time is already in user).
            let fields = line.split(separator: " ").dropFirst().prefix(8).compactMap { Int64($0) }
            if fields.count == 8 {
                sample.machineTotal = fields.reduce(0, +)
                sample.machineBusy = sample.machineTotal - fields[3] - fields[4]
            }
        }
        for pid in pids {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // Fields after the command name start at field 3 (state); utime and stime are 14 and 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 12, let user = Int64(fields[11]), let system = Int64(fields[12]) {
                sample.processes[pid] = user + system
            }
        }
        return sample
    }
}

/// How the cores were used between two samples, in CPU-seconds.
struct CPUUsage: Codable, Sendable {
    var wallSeconds: Double
    /// Busy CPU-seconds of the whole machine (all processes, all users).
    var machineBusySeconds: Double
    /// Busy share of all cores, 0...1.
    var machineBusyFraction: Double
    var serverSeconds: Double?
    var loadGeneratorSeconds: Double
    /// Busy time not spent in the server or the benchmark process (other users of the machine).
    var otherSeconds: Double

    init(from start: CPUSample, to end: CPUSample, wallSeconds: Double, serverPid: Int32?, benchPid: Int32) {
        func seconds(_ jiffies: Int64) -> Double { Double(jiffies) / CPUSample.ticksPerSecond }
        self.wallSeconds = wallSeconds
        machineBusySeconds = seconds(end.machineBusy - start.machineBusy)
        let total = end.machineTotal - start.machineTotal
        machineBusyFraction = total > 0 ? Double(end.machineBusy - start.machineBusy) / Double(total) : 0
        serverSeconds = serverPid.flatMap { pid in
            guard let before = start.processes[pid], let after = end.processes[pid] else { return nil }
            return seconds(after - before)
        }
        loadGeneratorSeconds = seconds((end.processes[benchPid] ?? 0) - (start.processes[benchPid] ?? 0))
        otherSeconds = max(0, machineBusySeconds - (serverSeconds ?? 0) - loadGeneratorSeconds)
    }
}

/// A file of `/proc`, read to its end. `String(contentsOfFile:)` reads such a file (its size is 0)
/// with one `read`, which for a long one (`/proc/net/tcp`, `/proc/mounts`) is only its first page.
func procText(_ path: String) -> String? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    guard let data = try? handle.readToEnd() else { return nil }
    return String(decoding: data, as: UTF8.self)
}
