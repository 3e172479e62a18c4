import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What a running jail's cgroups say of it, read from the directories its state file lists
/// (`cgroups`: `…/jail/NAME` in each hierarchy the jail uses). Nothing here walks processes
/// but the fallback of `memory` for a jail without a memory cgroup.
struct CgroupFigures {
    let directories: [String]
    /// What the directories' parents say of the controllers below them; nil: every file is tried.
    var parents: CgroupParents? = nil

    /// The memory charge: the sum over the leaves that hold the jail's processes (init,
    /// programs, sessions) of v2 `memory.current` or v1 `memory.usage_in_bytes`, from the
    /// first hierarchy that has them (the memory controller is in one hierarchy only). Where
    /// only `…/jail/NAME` itself has the file (v2, memory enabled above the jail), that one,
    /// which counts its leaves. nil when the jail has no memory cgroup.
    var memoryCharge: UInt64? {
        for directory in directories {
            for file in parents?.memoryFiles(directory) ?? ["memory.current", "memory.usage_in_bytes"] {
                // Where `jail/NAME` has no such file its leaves have none either (a v2
                // controller's files exist below where it is enabled; v1's everywhere): one
                // failed open per file instead of four, for every jail `jaild list` shows.
                guard let whole = Self.number("\(directory)/\(file)") else { continue }
                let leaves = JailCgroups.leaves.compactMap { Self.number("\(directory)/\($0)/\(file)") }
                return leaves.isEmpty ? whole : leaves.reduce(0, +)
            }
        }
        return nil
    }

    /// The programs' memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`); nil: none.
    var memoryLimit: UInt64? {
        guard let value = programsValue(["memory.max", "memory.limit_in_bytes"]), let bytes = UInt64(value) else { return nil }
        // v1 writes "no limit" as the largest page-aligned number.
        return bytes >= UInt64(1) << 62 ? nil : bytes
    }

    /// The programs' `pids.max`; nil: none.
    var pidsLimit: UInt64? { programsValue(["pids.max"]).flatMap { UInt64($0) } }

    /// The programs' CPU quota in CPUs (v2 `cpu.max` "QUOTA PERIOD", v1 `cpu.cfs_quota_us` /
    /// `cpu.cfs_period_us`); nil: none.
    var cpus: Double? {
        for directory in directories {
            if let max = Self.text("\(directory)/programs/cpu.max") {
                let fields = max.split(separator: " ")
                guard fields.count == 2, let quota = Double(fields[0]), let period = Double(fields[1]), period > 0 else { return nil }
                return quota / period
            }
            if let quota = Self.text("\(directory)/programs/cpu.cfs_quota_us").flatMap({ Double($0) }),
               let period = Self.text("\(directory)/programs/cpu.cfs_period_us").flatMap({ Double($0) }) {
                return quota < 0 || period <= 0 ? nil : quota / period
            }
        }
        return nil
    }

    /// The first of `files` found in a `programs` leaf, as written ("max" is no limit).
    func programsValue(_ files: [String]) -> String? {
        for directory in directories {
            for file in files {
                if let value = Self.text("\(directory)/programs/\(file)") { return value == "max" ? nil : value }
            }
        }
        return nil
    }

    static func text(_ path: String) -> String? {
        (try? readText(path)).map { String($0.trimmingWhitespace()) }
    }

    static func number(_ path: String) -> UInt64? { text(path).flatMap { UInt64($0) } }
}

/// The v2 controllers enabled below the parents of jails' cgroup directories (their parent's
/// `cgroup.subtree_control`), read once for every jail: a v2 directory has a controller's files
/// only when its parent enables the controller for it, and v1 files never. `jaild list` and
/// `metrics` then skip the opens that would fail (two or three a jail, thousands at 2,000
/// jails). Read after the state files: a jail's cgroup is made before its state is written,
/// so the controllers of every jail read are in them. Each such parent is held open, and
/// what is looked at below it is looked up from there (a shorter walk than from /).
final class CgroupParents: Sendable {
    struct Parent: Sendable {
        let path: String
        let controllers: Set<String>
        /// O_PATH; nil when it could not be opened (paths are then walked from /).
        let descriptor: FileDescriptor?
    }

    /// One or two parents, asked for every jail: a list, compared on bytes. A parent that is
    /// not v2 (no such file) or cannot be read is not here: every file of its children is tried.
    let enabled: [Parent]

    init(directories: some Sequence<String>) {
        var enabled: [Parent] = []
        var seen: [String] = []
        for directory in directories {
            guard let parent = Self.parent(directory), !seen.contains(where: { $0.utf8.elementsEqual(parent) }) else { continue }
            let path = String(Substring(parent))
            seen.append(path)
            guard let bytes = readProcFile(path + "/cgroup.subtree_control", limit: 4096) else { continue }
            let controllers = Set(bytes.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\n") })
                .map { String(decoding: $0, as: UTF8.self) })
            let descriptor: FileDescriptor?
            do { descriptor = try openDirectoryPath(path) } catch { descriptor = nil }
            enabled.append(Parent(path: path, controllers: controllers, descriptor: descriptor))
        }
        self.enabled = enabled
    }

    deinit {
        for parent in enabled { parent.descriptor.map { closeDescriptor($0.rawValue) } }
    }

    /// The controllers `directory` has files of; nil: not known (try them all).
    func controllers(_ directory: String) -> Set<String>? {
        entry(directory)?.controllers
    }

    private func entry(_ directory: String) -> Parent? {
        guard let parent = Self.parent(directory) else { return nil }
        return enabled.first { $0.path.utf8.elementsEqual(parent) }
    }

    /// A file below the cgroup `directory`, in one read(2) as readProcFile reads it; nil when
    /// it cannot be opened or read.
    func read(_ name: String, in directory: String, limit: Int) -> [UInt8]? {
        if let descriptor = entry(directory)?.descriptor, let slash = directory.utf8.lastIndex(of: UInt8(ascii: "/")) {
            let fd: FileDescriptor
            do { fd = try openFile("\(directory[directory.utf8.index(after: slash)...])/\(name)", O_RDONLY, in: descriptor) } catch {
                return nil
            }
            defer { closeDescriptor(fd.rawValue) }
            return readProcFile(fd, limit: limit)
        }
        return readProcFile("\(directory)/\(name)", limit: limit)
    }

    /// stat(2) of `name` below the cgroup `directory` (links followed); nil when it fails.
    func status(_ name: String, in directory: String) -> stat? {
        var info = stat()
        if let descriptor = entry(directory)?.descriptor, let slash = directory.utf8.lastIndex(of: UInt8(ascii: "/")) {
            return fstatat(descriptor.rawValue, "\(directory[directory.utf8.index(after: slash)...])/\(name)", &info, 0) == 0 ? info : nil
        }
        return stat("\(directory)/\(name)", &info) == 0 ? info : nil
    }

    /// The memory files `directory` may have, in the order CgroupFigures.memoryCharge tries them.
    func memoryFiles(_ directory: String) -> [String] {
        guard let controllers = controllers(directory) else { return ["memory.current", "memory.usage_in_bytes"] }
        return controllers.contains("memory") ? ["memory.current"] : []
    }

    /// Whether `directory` may have the files of `controller`.
    func mayHave(_ directory: String, _ controller: String) -> Bool {
        controllers(directory)?.contains(controller) ?? true
    }

    /// Preflight.parentDirectory of an absolute path, on bytes without making a string (it is
    /// asked for every jail's directories); nil for a path without a slash.
    static func parent(_ directory: String) -> Substring.UTF8View? {
        let path = directory.utf8
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return nil }
        return slash == path.startIndex ? "/".utf8[...] : path[..<slash]
    }
}

extension Control {
    /// `jaild show NAME [--json]`: one running jail's full record, as `machinectl show` gives it
    /// (`key: value` lines, every value escaped) or one JSON object. 0 found, 1 not.
    public static func show(_ spec: String, json: Bool) -> Int32 {
        guard let state = runningJailOrSay(spec) else { return 1 }
        let record = ShownJail(state: state)
        print(json ? record.json() : record.text(), terminator: "")
        return 0
    }
}

/// One jail as `jaild show` prints it: the `jaild list` row and what a row leaves out.
struct ShownJail {
    let row: Row
    let stateFile: String
    let figures: CgroupFigures

    init(state: JailState) {
        row = Row(state: state)
        let file = JailState.named().first { $0.state.socket == state.socket }?.name ?? state.name
        stateFile = "\(JailState.directory)/\(file).state"
        figures = CgroupFigures(directories: state.cgroups)
    }

    var controlSocket: String {
        row.state.control.isEmpty ? AdoptionAndEntryChannel.controlPath(socketPath: row.state.socket) : row.state.control
    }

    /// (key, JSON value, text value), in the order both forms print.
    var properties: [(String, String, String)] {
        let s = row.state
        func number<T>(_ n: T?) -> (String, String) { n.map { ("\($0)", "\($0)") } ?? ("null", "-") }
        func string(_ text: String) -> (String, String) { (Logfmt.json(text), text) }
        let cpus = figures.cpus.map { ("\($0)", "\($0)") } ?? ("null", "-")
        let userns = s.userRange.map { "\($0)-\(UInt64($0) + UInt64(UserRange.insideCount) - 1)" } ?? "-"
        var pairs: [(String, (String, String))] = [
            ("name", string(s.name)), ("socket", string(s.socket)), ("pid_file", string(s.pidFile)),
            ("control_socket", string(controlSocket)), ("state_file", string(stateFile)), ("root", string(s.root)),
            ("uid", number(s.uid)), ("gid", number(s.gid)), ("supervisor_pid", number(s.supervisor)),
            ("init_pid", number(s.initPid)), ("started", string(Self.iso8601(s.started))),
            ("started_seconds", number(s.started)), ("uptime_seconds", number(row.uptime)),
            ("sessions", number(row.sessions)), ("memory_bytes", number(row.memory)),
            ("memory_source", string(row.memorySource)), ("memory_limit_bytes", number(figures.memoryLimit)),
            ("pids_limit", number(figures.pidsLimit)), ("cpus", cpus), ("ports", string(s.ports)),
            ("addresses", ("[" + s.addresses.map(Logfmt.json).joined(separator: ",") + "]", s.addresses.isEmpty ? "-" : s.addresses.joined(separator: " "))),
            ("loopback", s.loopback.isEmpty ? ("null", "-") : string(s.loopback)),
            ("rc_status", number(s.rcStatus)), ("payload", row.payload.map { string($0) } ?? ("null", "-")),
            ("userns_start", number(s.userRange)),
            ("userns_count", number(s.userRange == nil ? 0 : UserRange.insideCount)), ("userns", ("\(Logfmt.json(userns))", userns)),
            ("cgroup", string(s.cgroup)),
            ("cgroups", ("[" + s.cgroups.map(Logfmt.json).joined(separator: ",") + "]", s.cgroups.joined(separator: " "))),
            ("services", ("[" + Row.servicesJSON(s.services) + "]", s.services.joined(separator: " "))),
        ]
        let disk = row.disk
        pairs += [("disk_bytes", number(disk?.bytes)), ("disk_limit_bytes", number(disk?.limitBytes)),
                  ("disk_inodes", number(disk?.inodes)), ("disk_inodes_limit", number(disk?.inodeLimit)),
                  ("disk_backend", disk.map { string($0.backend.rawValue) } ?? ("null", "-"))]
        return pairs.map { ($0.0, $0.1.0, $0.1.1) }
    }

    func json() -> String {
        "{" + properties.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}\n"
    }

    func text() -> String {
        properties.map { "\($0.0): \(Logfmt.printable($0.2))\n" }.joined()
    }

    /// Seconds since the epoch as `2026-12-06T19:15:03Z`.
    static func iso8601(_ seconds: Int64) -> String {
        guard let t = UTCTime(secondsSinceEpoch: seconds) else { return "\(seconds)" }
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(t.year)-\(two(t.month))-\(two(t.day))T\(two(t.hour)):\(two(t.minute)):\(two(t.second))Z"
    }
}
