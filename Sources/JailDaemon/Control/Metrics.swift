import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `jaild metrics [--output FILE]`: every running jail's figures in the Prometheus text
/// exposition format (docs/metrics.md), for node_exporter's textfile collector. Only kernel
/// counters are read (the jail's cgroup files, its state file, statfs or the btrfs qgroup of
/// its disk, its session helpers as `jaild list` finds them): no walk of every process.
public enum Metrics {
    /// One jail's figures as read; nil where the jail has no such figure (no controller, no
    /// limit, no rc): its series is then left out, never written as 0.
    struct Figures: Equatable, Sendable {
        var name: String
        var uid: UInt32
        var started: Int64
        var cpuSeconds: Double?
        var memoryBytes: UInt64?
        var memoryLimitBytes: UInt64?
        var memoryMaxBytes: UInt64?
        var oomKills: UInt64?
        var pids: UInt64?
        var pidsLimit: UInt64?
        var sessions: Int?
        var diskBytes: UInt64?
        var diskLimitBytes: UInt64?
        var rcExitStatus: Int32?
        var bootRestarts: UInt64?
        var network: Network?
    }

    /// The jail's own sockets' traffic, counted by the kernel (NetworkCounters).
    struct Network: Equatable, Sendable {
        var receiveBytes: UInt64
        var transmitBytes: UInt64
        var receivePackets: UInt64
        var transmitPackets: UInt64
    }

    /// One metric family: its name, type, help, and the value of a jail (nil: no series).
    struct Family: Sendable {
        let name: String
        let type: String
        let help: String
        let value: @Sendable (Figures) -> String?
    }

    static let families: [Family] = [
        Family(name: "jail_up", type: "gauge", help: "1 for each running jail.") { _ in "1" },
        Family(name: "jail_start_time_seconds", type: "gauge",
               help: "When the jail started, in seconds since the Unix epoch.") { "\($0.started)" },
        Family(name: "jail_cpu_seconds_total", type: "counter",
               help: "CPU time used by the whole jail (init, session helpers and programs), from its cgroup (v2 cpu.stat usage_usec, or v1 cpuacct.usage).") {
            $0.cpuSeconds.map(number)
        },
        Family(name: "jail_memory_bytes", type: "gauge",
               help: "Memory charged to the whole jail's memory cgroup (init, session helpers and programs; v2 memory.current, v1 memory.usage_in_bytes). Only for jails with a memory cgroup (--memory).") {
            $0.memoryBytes.map { "\($0)" }
        },
        Family(name: "jail_memory_limit_bytes", type: "gauge",
               help: "The programs' memory limit (--memory); the session helpers have their own, a quarter of it, at least 32 MiB.") {
            $0.memoryLimitBytes.map { "\($0)" }
        },
        Family(name: "jail_memory_max_bytes", type: "gauge",
               help: "The most memory the whole jail's cgroup was charged since it started (v2 memory.peak, v1 memory.max_usage_in_bytes).") {
            $0.memoryMaxBytes.map { "\($0)" }
        },
        Family(name: "jail_oom_kills_total", type: "counter",
               help: "Processes of the jail killed by the out-of-memory killer for its memory limits (v2 memory.events oom_kill, v1 memory.oom_control oom_kill of each leaf).") {
            $0.oomKills.map { "\($0)" }
        },
        Family(name: "jail_pids", type: "gauge", help: "Tasks (processes and threads) in the whole jail's pids cgroup.") {
            $0.pids.map { "\($0)" }
        },
        Family(name: "jail_pids_limit", type: "gauge", help: "The programs' task limit (--pids).") {
            $0.pidsLimit.map { "\($0)" }
        },
        Family(name: "jail_sessions", type: "gauge", help: "Live sessions (session helpers) of the jail.") {
            $0.sessions.map { "\($0)" }
        },
        Family(name: "jail_disk_bytes", type: "gauge", help: "Disk space used by the jail's writable layer (--disk image or btrfs qgroup).") {
            $0.diskBytes.map { "\($0)" }
        },
        Family(name: "jail_disk_limit_bytes", type: "gauge", help: "The jail's disk limit (--disk).") {
            $0.diskLimitBytes.map { "\($0)" }
        },
        Family(name: "jail_network_receive_bytes_total", type: "counter",
               help: "Bytes (IP header and payload) received by the jail's own sockets, TCP and UDP, IPv4 and IPv6, loopback included, counted by a cgroup_skb ingress program.") {
            $0.network.map { "\($0.receiveBytes)" }
        },
        Family(name: "jail_network_transmit_bytes_total", type: "counter",
               help: "Bytes (IP header and payload) sent by the jail's own sockets, counted by a cgroup_skb egress program.") {
            $0.network.map { "\($0.transmitBytes)" }
        },
        Family(name: "jail_network_receive_packets_total", type: "counter",
               help: "Packets received by the jail's own sockets, as the kernel hands them over (one coalesced GRO packet counts once).") {
            $0.network.map { "\($0.receivePackets)" }
        },
        Family(name: "jail_network_transmit_packets_total", type: "counter",
               help: "Packets sent by the jail's own sockets, as the kernel hands them down (one GSO packet counts once).") {
            $0.network.map { "\($0.transmitPackets)" }
        },
        Family(name: "jail_boot_restarts_total", type: "counter",
               help: "Restarts of the jail's --boot commands under --boot-restart, since the jail started.") {
            $0.bootRestarts.map { "\($0)" }
        },
        Family(name: "jail_rc_exit_status", type: "gauge",
               help: "How the jail's --rc ended: its exit status, 128+N for signal N. Absent while it runs or without --rc.") {
            $0.rcExitStatus.map { "\($0)" }
        },
    ]

    // MARK: Rendering (pure)

    /// The exposition text: HELP and TYPE once per family that has a series, then its series.
    static func render(_ jails: [Figures]) -> String {
        // Each jail's labels and values made once, on as many threads as there are CPUs
        // (Parallel), then laid out family by family in one string grown in place.
        let series = Parallel.map(jails.count) { index in
            let jail = jails[index]
            return (labels: "{jail=\"\(escapeLabel(Logfmt.printable(jail.name)))\",uid=\"\(jail.uid)\"} ",
                    values: families.map { $0.value(jail) })
        }
        var out = ""
        out.reserveCapacity(jails.count * families.count * 64)
        for (column, family) in families.enumerated() {
            var header = false
            for jail in series {
                guard let value = jail.values[column] else { continue }
                if !header {
                    out += "# HELP \(family.name) \(escapeHelp(family.help))\n# TYPE \(family.name) \(family.type)\n"
                    header = true
                }
                out += family.name
                out += jail.labels
                out += value
                out += "\n"
            }
        }
        return out
    }

    /// A label value as the format wants it: backslash, double quote and newline escaped.
    static func escapeLabel(_ text: String, quote: Bool = true) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) else {
            return text
        }
        var out = ""
        for character in text.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"" where quote: out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// HELP text: backslash and newline escaped.
    static func escapeHelp(_ text: String) -> String {
        escapeLabel(text, quote: false)
    }

    /// A float the format reads (Swift prints `1.5`, `1e-06`, `12345.0`).
    static func number(_ value: Double) -> String { "\(value)" }

    // MARK: Reading (the kernel's counters)

    /// The figures of a running jail. Its cgroup directories (state `cgroups`) are `…/jail/NAME`
    /// in each hierarchy it uses; usage is read there, where the kernel sums the leaves (init,
    /// sessions, programs), limits from `programs`, where `--memory` and `--pids` are set.
    /// `initDirectory`: the jail's /proc/INIT when the caller has it open (else opened here).
    /// `cgroupParents`: what the parents of its cgroups enable, to skip the files they have not.
    static func read(_ state: JailState, sessions: Int?, initDirectory: ProcessDirectory? = nil,
                     cgroupParents: CgroupParents? = nil) -> Figures {
        var figures = Figures(name: state.name, uid: state.uid, started: state.started, rcExitStatus: state.rcStatus)
        figures.sessions = sessions
        if state.bootCommands == 0 {
            figures.bootRestarts = 0  // no boot service: init has no record to look for
        } else if state.initPid > 0 {
            figures.bootRestarts = bootRestarts(initDirectory: initDirectory ?? ProcessDirectory(state.initPid))
        }
        for directory in state.cgroups {
            // Read from the parent's descriptor when the caller has it (a shorter walk).
            func file(_ name: String) -> [UInt8]? {
                if let cgroupParents { return cgroupParents.read(name, in: directory, limit: cgroupFileLimit) }
                return readProcFile("\(directory)/\(name)", limit: cgroupFileLimit)
            }
            func counter(_ name: String) -> UInt64? { Self.counter(bytes: file(name)) }
            func keyed(_ name: String, _ key: String) -> UInt64? { Self.keyed(bytes: file(name), key) }
            if figures.cpuSeconds == nil {
                if let usec = keyed("cpu.stat", "usage_usec") {
                    figures.cpuSeconds = Double(usec) / 1_000_000
                } else if let nsec = counter("cpuacct.usage") {
                    figures.cpuSeconds = Double(nsec) / 1_000_000_000
                }
            }
            // A v2 directory whose parent does not enable memory or pids has no such files (and
            // no v1 ones): those opens are skipped.
            let memory = cgroupParents?.mayHave(directory, "memory") ?? true
            let mayBeV1 = cgroupParents?.controllers(directory) == nil
            if figures.memoryBytes == nil && memory {
                if let current = counter("memory.current") {
                    figures.memoryBytes = current
                    figures.memoryLimitBytes = counter("programs/memory.max")
                    figures.memoryMaxBytes = counter("memory.peak")
                    figures.oomKills = keyed("memory.events", "oom_kill")
                } else if mayBeV1, let usage = counter("memory.usage_in_bytes") {
                    figures.memoryBytes = usage
                    figures.memoryLimitBytes = counter("programs/memory.limit_in_bytes")
                    figures.memoryMaxBytes = counter("memory.max_usage_in_bytes")
                    // v1 counts a kill in the cgroup whose limit was hit only: the leaves are summed.
                    let kills = JailCgroups.leaves.compactMap { keyed("\($0)/memory.oom_control", "oom_kill") }
                    figures.oomKills = kills.isEmpty ? nil : kills.reduce(0, +)
                }
            }
            if figures.pids == nil, cgroupParents?.mayHave(directory, "pids") ?? true, let current = counter("pids.current") {
                figures.pids = current
                figures.pidsLimit = counter("programs/pids.max")
            }
        }
        if let counters = NetworkCounters.read(state: state) {
            figures.network = Network(receiveBytes: counters.rxBytes, transmitBytes: counters.txBytes,
                                      receivePackets: counters.rxPackets, transmitPackets: counters.txPackets)
        }
        if let disk = DiskUsage.of(root: state.root, initPid: state.initPid) {
            figures.diskBytes = disk.bytes
            figures.diskLimitBytes = disk.limitBytes
        }
        return figures
    }

    /// A file holding one number ("max" and a missing file: nil).
    /// init's `jail-boot` record (Init+Boot.swift): 0 until a boot service was restarted.
    static func bootRestarts(initDirectory: ProcessDirectory) -> UInt64? {
        let record: [UInt8]?
        // A record that is there but cannot be read: no figure. None (no restart yet): 0.
        do { record = try initDirectory.memfdRecord(prefix: "/memfd:" + Init.bootRecordName, limit: 256) } catch { return nil }
        guard let bytes = record else { return 0 }
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.hasPrefix("restarts=") else { return nil }
        return UInt64(text.dropFirst("restarts=".count).prefix { $0.isNumber })
    }

    /// Read on bytes, in one read(2) (cgroupfs, like procfs, makes a small file whole on the
    /// first read; readProcFile): `jaild metrics` reads several of these for every jail.
    static func counter(_ path: String) -> UInt64? {
        counter(bytes: readProcFile(path, limit: cgroupFileLimit))
    }

    /// `counter` of a file's bytes (nil: it could not be read).
    static func counter(bytes: [UInt8]?) -> UInt64? {
        guard let bytes else { return nil }
        return bytes.withUnsafeBufferPointer { bytes in
            // The kernel's form, digits and a newline; anything else as it was always read.
            let digits = bytes.last == UInt8(ascii: "\n") ? UnsafeBufferPointer(rebasing: bytes.dropLast()) : bytes
            if !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
                return parseInteger(digits)
            }
            return UInt64(String(decoding: bytes, as: UTF8.self).trimmingWhitespace())
        }
    }

    /// The number after `key ` in a flat-keyed file (cpu.stat, memory.events, memory.oom_control).
    static func keyed(_ path: String, _ key: String) -> UInt64? {
        keyed(bytes: readProcFile(path, limit: cgroupFileLimit), key)
    }

    /// `keyed` of a file's bytes (nil: it could not be read).
    static func keyed(bytes: [UInt8]?, _ key: String) -> UInt64? {
        guard let bytes else { return nil }
        let key = Array(key.utf8)
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            let parts = line.split(separator: UInt8(ascii: " "))
            if parts.count == 2, parts[0].elementsEqual(key) {
                return parts[1].withUnsafeBufferPointer { parseInteger($0) }
            }
        }
        return nil
    }

    /// More than any cgroup file read here holds (cpu.stat is a few hundred bytes).
    static let cgroupFileLimit = 16384

    /// Every running jail, as exposition text; each jail's figures read on as many threads as
    /// there are CPUs (RunningJails), as `jaild list` does.
    static func collect() -> String {
        render(RunningJails.map { state, parents in
            // /proc/INIT and its children's opened once for the sessions and the boot record.
            let initDirectory = ProcessDirectory(state.initPid)
            let children = initDirectory.children.map(ProcessDirectory.init)
            return read(state, sessions: Sessions.helpers(initDirectory: initDirectory, children: children).count,
                        initDirectory: initDirectory, cgroupParents: parents)
        })
    }

    /// `jaild metrics [--output FILE]`: stdout, or FILE replaced atomically (a temporary file in
    /// the same directory, then rename), so a collector never reads half a file.
    public static func run(output: String?) -> Int32 {
        guard getuid() == 0 else {
            JailLogHandler.emitToTerminal("only root may read jail metrics (the session records are root's)")
            return 1
        }
        let text = collect()
        guard let output else {
            print(text, terminator: "")
            return 0
        }
        do throws(SystemError) {
            try replaceAtomically(output, with: Array(text.utf8))
        } catch {
            JailLogHandler.emitToTerminal("metrics: \(error)")
            return 1
        }
        return 0
    }

    /// Writes `bytes` to `path` through `path.tmp-PID` (no `.prom` suffix, so the textfile
    /// collector skips it) and renames it over `path`; 0644, as the collector reads as its user.
    static func replaceAtomically(_ path: String, with bytes: [UInt8]) throws(SystemError) {
        try writeFileAtomically(path, bytes, mode: 0o644, temporary: "\(path).tmp-\(getpid())")
    }
}
