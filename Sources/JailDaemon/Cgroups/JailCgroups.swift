import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The cgroups of one jail, in every hierarchy it uses: `jail/NAME/init` holds init (no
/// limits, so the operator is never locked out), `jail/NAME/sessions` the session helpers
/// (with `--memory` or `--cpus`, limits of their own: `CgroupLimits.sessionLimits`),
/// `jail/NAME/programs` everything the jail runs, with the limits. The unified (v2) hierarchy is always used
/// when mounted (process tracking, and the port filter attaches there); v1 hierarchies only
/// for limits that v2 cannot serve on this host. Only cgroups jaild created are touched.
struct JailCgroups {
    let name: String
    /// `…/jail/NAME` in each hierarchy used.
    let directories: [String]
    let unifiedDirectory: String?
    /// The `…/jail/NAME` directories whose `programs` leaf holds the programs: those with a
    /// limit. Moving a process between cgroups costs an RCU grace period (milliseconds per
    /// session), so where there is no limit to enforce the programs stay in `init`'s cgroup.
    let programDirectories: [String]
    /// The `…/jail/NAME` directories whose `sessions` leaf has a limit; the helpers move
    /// there right after init forks them (elsewhere they stay in `init`, for the same reason).
    var sessionDirectories: [String] = []

    static let leaves = ["init", "programs", "sessions"]

    /// The controller each limit needs, and where it is served: v2 if its root offers it.
    static func plan(_ limits: CgroupLimits, mounts: CgroupMounts,
                     offered: Set<String>) throws(JailError) -> (v2: [String], v1: [String: String]) {
        var v2: [String] = []
        var v1: [String: String] = [:]
        for (controller, flag) in limits.controllers {
            if mounts.unified != nil && offered.contains(controller) {
                v2.append(controller)
            } else if let mount = mounts.v1[controller] {
                v1[controller] = mount
            } else {
                throw .startFailed("\(flag) needs the \(controller) cgroup controller, which this host offers neither in cgroup v2 nor v1")
            }
        }
        return (v2, v1)
    }

    static func create(name: String, limits: CgroupLimits, mounts: CgroupMounts) throws(JailError) -> JailCgroups {
        let offered = Set((try? readText("\(mounts.unified ?? "/nonexistent")/cgroup.controllers"))?
            .split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init) ?? [])
        let (v2, v1) = try plan(limits, mounts: mounts, offered: offered)
        var hierarchies: [(root: String, controllers: [String], unified: Bool)] = []
        if let unified = mounts.unified { hierarchies.append((unified, v2, true)) }
        for mount in Set(v1.values).sorted() { hierarchies.append((mount, v1.filter { $0.value == mount }.map(\.key), false)) }
        var created: [String] = []
        var limited: [String] = []
        var sessions: [String] = []
        do throws(JailError) {
            for h in hierarchies {
                let directory = "\(h.root)/jail/\(name)"
                try removeStale(directory)
                try makeDirectory("\(h.root)/jail")
                try makeDirectory(directory)
                created.append(directory)
                if h.unified && !h.controllers.isEmpty {
                    let enable = h.controllers.map { "+" + $0 }.joined(separator: " ")
                    for parent in [h.root, "\(h.root)/jail", directory] {
                        try write(enable, to: "\(parent)/cgroup.subtree_control")
                    }
                }
                for leaf in leaves { try makeDirectory("\(directory)/\(leaf)") }
                try limits.apply(to: "\(directory)/programs", unified: h.unified, controllers: h.controllers)
                if !h.controllers.isEmpty { limited.append(directory) }
                if let sessionLimits = limits.sessionLimits {
                    let controllers = sessionLimits.controllers.map(\.0).filter(h.controllers.contains)
                    if !controllers.isEmpty {
                        try sessionLimits.apply(to: "\(directory)/sessions", unified: h.unified, controllers: controllers)
                        sessions.append(directory)
                    }
                }
            }
        } catch {
            JailCgroups(name: name, directories: created, unifiedDirectory: nil, programDirectories: []).remove()
            throw error
        }
        return JailCgroups(name: name, directories: created,
                           unifiedDirectory: mounts.unified.map { "\($0)/jail/\(name)" }, programDirectories: limited,
                           sessionDirectories: sessions)
    }

    /// Moves init (and so the helpers it will fork) into `init` of every hierarchy.
    func attachInit(_ pid: pid_t) throws(JailError) {
        for directory in directories { try Self.write("\(pid)", to: "\(directory)/init/cgroup.procs") }
    }

    /// Write-only descriptors of each limited `programs/cgroup.procs`: the spawn path writes "0" to
    /// them, from inside the jail, where the cgroup file systems are not mounted.
    func openProgramProcs() throws(JailError) -> [Int32] {
        try Self.openProcs(programDirectories.map { "\($0)/programs/cgroup.procs" })
    }

    /// The same for each limited `sessions/cgroup.procs`: a new helper writes "0" to join.
    func openSessionProcs() throws(JailError) -> [Int32] {
        try Self.openProcs(sessionDirectories.map { "\($0)/sessions/cgroup.procs" })
    }

    static func openProcs(_ paths: [String]) throws(JailError) -> [Int32] {
        var fds: [Int32] = []
        for path in paths {
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            if fd < 0 {
                for f in fds { close(f) }
                throw .system(.last("open", path: path))
            }
            fds.append(fd)
        }
        return fds
    }

    /// Removes what this jail created; the shared `jail` parent only if empty.
    func remove() {
        for directory in directories {
            for leaf in Self.leaves { rmdir("\(directory)/\(leaf)") }
            if rmdir(directory) < 0 && errno != ENOENT { log.warning("cannot remove cgroup \(directory): \(Errno(rawValue: errno))") }
            let parent = String(directory[..<(directory.lastIndex(of: "/") ?? directory.endIndex)])
            rmdir(parent)
        }
    }

    /// A jail killed without cleanup leaves its cgroups; empty ones are removed, busy ones
    /// mean its processes live on.
    static func removeStale(_ directory: String) throws(JailError) {
        guard (try? fileStatus(directory)) != nil else { return }
        for leaf in leaves { rmdir("\(directory)/\(leaf)") }
        if rmdir(directory) < 0 && errno != ENOENT {
            throw .failed("cgroup \(directory) of an earlier jail still exists and cannot be removed", .last("rmdir", path: directory))
        }
    }

    static func makeDirectory(_ path: String) throws(JailError) {
        if mkdir(path, 0o755) < 0 && errno != EEXIST { throw .system(.last("mkdir", path: path)) }
    }

    static func write(_ text: String, to path: String) throws(JailError) {
        try JailError.wrap { () throws(SystemError) in try writeKernelFile(path, text) }
    }
}
