import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The cgroups of one jail, in every hierarchy it uses: `jail/NAME/init.scope` holds init (no
/// limits of its own, so the operator is never locked out; named as systemd names a
/// container's init's cgroup, which lxcfs looks through to `jail/NAME`, see `rootLimits`), `jail/NAME/sessions` the session helpers
/// (with `--memory` or `--cpus`, limits of their own: `CgroupLimits.sessionLimits`),
/// `jail/NAME/programs` everything the jail runs, with the limits. The unified (v2) hierarchy is always used
/// when mounted (process tracking, and the port filter attaches there); v1 hierarchies only
/// for limits that v2 cannot serve on this host. Only cgroups jaild created are touched.
struct JailCgroups {
    let name: String
    /// `…/jail/NAME` in each hierarchy used.
    var directories: [String]
    var unifiedDirectory: String?
    /// The `…/jail/NAME` directories whose `programs` leaf holds the programs: those with a
    /// limit. Moving a process between cgroups costs an RCU grace period (milliseconds per
    /// session), so where there is no limit to enforce the programs stay in `init`'s cgroup.
    var programDirectories: [String]
    /// The `…/jail/NAME` directories whose `sessions` leaf has a limit; the helpers move
    /// there right after init forks them (elsewhere they stay in `init`, for the same reason).
    var sessionDirectories: [String] = []

    static let leaves = ["init.scope", "programs", "sessions"]
    /// init's leaf before issue 31 (an adopted jail of an older jaild still has it).
    static let legacyInitLeaf = "init"

    /// The controller each limit needs, and where it is served: v2 if its root offers it.
    static func plan(_ limits: CgroupLimits, mounts: CgroupMounts,
                     offered: [String]) throws(JailError) -> (v2: [String], v1: ControllerMounts) {
        var v2: [String] = []
        var v1: ControllerMounts = [:]
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

    /// Makes `jail/NAME` and its leaves in every hierarchy used, with the limits. With
    /// `deferUnified` (the jail gets a cgroup namespace: init must sit in `jail/NAME` for a
    /// moment, which v2 forbids beside children with controllers), the v2 controllers of
    /// `jail/NAME` and the limits below it wait for `enableUnified` (Supervisor+Clone.swift).
    static func create(name: String, limits: CgroupLimits, mounts: CgroupMounts,
                       deferUnified: Bool = false) throws(JailError) -> JailCgroups {
        // An array: see ControllerMounts. Unreadable, the start fails naming the file (it
        // said before that the host offered no such controller).
        let offered = try mounts.unified.map { root throws(JailError) in
            try JailError.wrap { () throws(SystemError) in try readText("\(root)/cgroup.controllers") }
                .split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        } ?? []
        let (v2, v1) = try plan(limits, mounts: mounts, offered: offered)
        var hierarchies: [(root: String, controllers: [String], unified: Bool)] = []
        if let unified = mounts.unified { hierarchies.append((unified, v2, true)) }
        for mount in v1.mounts { hierarchies.append((mount, v1.controllers(mountedAt: mount), false)) }
        var cgroups = JailCgroups(name: name, directories: [], unifiedDirectory: nil, programDirectories: [])
        cgroups.limits = limits
        do throws(JailError) {
            for h in hierarchies {
                let directory = "\(h.root)/jail/\(name)"
                try removeStale(directory)
                try makeDirectory("\(h.root)/jail")
                try makeDirectory(directory)
                cgroups.directories.append(directory)
                if h.unified && !h.controllers.isEmpty {
                    let enable = h.controllers.map { "+" + $0 }.joined(separator: " ")
                    for parent in [h.root, "\(h.root)/jail"] + (deferUnified ? [] : [directory]) {
                        try writeControl(enable, to: "\(parent)/cgroup.subtree_control")
                    }
                }
                if !h.unified && h.controllers.contains("cpuset") { try inheritCPUSet(root: h.root, directory: directory, own: limits.cpuset) }
                try limits.rootLimits.apply(to: directory, unified: h.unified, controllers: h.controllers)
                for leaf in leaves { try makeDirectory("\(directory)/\(leaf)") }
                if !h.unified && h.controllers.contains("cpuset") {
                    try inheritCPUSet(root: h.root, directory: directory, own: limits.cpuset, leavesOnly: true)
                }
                if h.unified {
                    cgroups.unifiedDirectory = directory
                    cgroups.unifiedControllers = h.controllers
                    if !h.controllers.isEmpty { cgroups.programDirectories.append(directory) }
                    if cgroups.limitsSessions(controllers: h.controllers) { cgroups.sessionDirectories.append(directory) }
                    if !deferUnified { try cgroups.applyLimits(directory: directory, unified: true, controllers: h.controllers) }
                } else {
                    if !h.controllers.isEmpty { cgroups.programDirectories.append(directory) }
                    if cgroups.limitsSessions(controllers: h.controllers) { cgroups.sessionDirectories.append(directory) }
                    try cgroups.applyLimits(directory: directory, unified: false, controllers: h.controllers)
                }
            }
        } catch {
            cgroups.remove()
            throw error
        }
        return cgroups
    }

    /// The limits this jail was made with; the v2 controllers it uses (for `enableUnified`).
    var limits = CgroupLimits()
    var unifiedControllers: [String] = []

    func limitsSessions(controllers: [String]) -> Bool {
        guard let sessionLimits = limits.sessionLimits else { return false }
        return sessionLimits.controllers.contains { controllers.contains($0.0) }
    }

    func applyLimits(directory: String, unified: Bool, controllers: [String]) throws(JailError) {
        try limits.apply(to: "\(directory)/programs", unified: unified, controllers: controllers)
        if let sessionLimits = limits.sessionLimits {
            let controllers = sessionLimits.controllers.map(\.0).filter(controllers.contains)
            if !controllers.isEmpty { try sessionLimits.apply(to: "\(directory)/sessions", unified: unified, controllers: controllers) }
        }
    }

    /// Once init has left `jail/NAME` for `jail/NAME/init`: the v2 controllers of `jail/NAME`
    /// and the limits of its leaves (see `create`).
    func enableUnified() throws(JailError) {
        guard let directory = unifiedDirectory, !unifiedControllers.isEmpty else { return }
        try Self.writeControl(unifiedControllers.map { "+" + $0 }.joined(separator: " "), to: "\(directory)/cgroup.subtree_control")
        try applyLimits(directory: directory, unified: true, controllers: unifiedControllers)
    }

    /// cgroup v1's cpuset takes no task into a cgroup whose cpus or mems are empty, and a
    /// child's must be within its parent's: `jail/` gets the host's CPUs and memory nodes again
    /// at each start (a CPU that went offline and came back is dropped from every v1 cpuset by
    /// the kernel and never put back), `jail/NAME` the jail's own set (`own`), its leaves that
    /// of `jail/NAME` (`leavesOnly`: after they are made).
    static func inheritCPUSet(root: String, directory: String, own: [Int]?, leavesOnly: Bool = false) throws(JailError) {
        let chain = leavesOnly ? leaves.map { "\(directory)/\($0)" } : ["\(root)/jail", directory]
        for path in chain {
            let parent = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let source = path == "\(root)/jail" && file == "cpuset.cpus" ? "\(parent)/cpuset.effective_cpus" : "\(parent)/\(file)"
                var value = String((try? readText(source))?.trimmingWhitespace() ?? "")
                if path == directory && file == "cpuset.cpus", let own { value = CPUSet.format(own) }
                if !value.isEmpty { try writeControl(value, to: "\(path)/\(file)") }
            }
        }
    }

    /// Moves init into `jail/NAME` of every hierarchy: where its cgroup namespace is rooted.
    func attachRoot(_ pid: pid_t) throws(JailError) {
        for directory in directories { try Self.writeControl("\(pid)", to: "\(directory)/cgroup.procs") }
    }

    /// Moves init (and so the helpers it will fork) into `init` of every hierarchy.
    func attachInit(_ pid: pid_t) throws(JailError) {
        for directory in directories { try Self.writeControl("\(pid)", to: "\(directory)/init.scope/cgroup.procs") }
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
            do { fds.append(try openFile(path, O_WRONLY).rawValue) } catch {
                for f in fds { closeDescriptor(f) }
                throw .system(error)
            }
        }
        return fds
    }

    /// `--init`: `programs/payload` in the unified hierarchy, delegated to the jail's root
    /// (`owner`, its host id) as systemd's Delegate= does: the directory and its
    /// `cgroup.procs`, `cgroup.threads` and `cgroup.subtree_control`. The payload's cgroup
    /// namespace is rooted there; the limits stay on `programs` (and on the v1 hierarchies'
    /// `programs`, which the payload joins too), so they bound the payload's whole tree.
    /// Returns a write-only descriptor of its `cgroup.procs` for init.
    func delegatePayload(owner: UInt32) throws(JailError) -> Int32 {
        guard let unified = unifiedDirectory else {
            throw .startFailed("--init needs the unified cgroup hierarchy (cgroup2) mounted on the host: systemd inside runs on it")
        }
        let directory = "\(unified)/programs/payload"
        try Self.makeDirectory(directory)
        try JailError.wrap { () throws(SystemError) in
            for path in [directory] + Self.delegatedFiles.map({ "\(directory)/\($0)" }) { try setOwner(path, uid: owner, gid: owner) }
        }
        return try Self.openProcs(["\(directory)/cgroup.procs"])[0]
    }

    static let delegatedFiles = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"]

    /// A delegated subtree after the jail: the payload's init made cgroups of its own below it
    /// (empty once every process is gone), removed depth first.
    /// A cgroup left here (busy) keeps its parents too: the removal of `jail/NAME`, which is
    /// reported, says so; the leaves' own failures add nothing to it.
    static func removeTree(_ path: String) {
        for entry in listDirectory(path) {
            let child = "\(path)/\(entry)"
            if let info = try? fileStatus(child), isDirectory(info) { removeTree(child) }
        }
        discardDirectory(path)
    }

    /// Removes what this jail created; the shared `jail` parent only if empty.
    func remove() {
        for directory in directories {
            Self.removeTree("\(directory)/programs/payload")
            for leaf in Self.leaves + [Self.legacyInitLeaf] { discardDirectory("\(directory)/\(leaf)") }  // as in removeTree
            do { try JailSystem.removeDirectory(directory) } catch { log.warning("cannot remove cgroup \(directory): \(error.errno)") }
            // The shared parent goes only when no other jail has a cgroup there: not empty is the rule, not a failure.
            discardDirectory(String(directory[..<(directory.lastIndex(of: "/") ?? directory.endIndex)]))
        }
    }

    /// A jail killed without cleanup leaves its cgroups; empty ones are removed, busy ones
    /// mean its processes live on.
    static func removeStale(_ directory: String) throws(JailError) {
        guard (try? fileStatus(directory)) != nil else { return }
        removeTree("\(directory)/programs/payload")
        for leaf in leaves + [legacyInitLeaf] { discardDirectory("\(directory)/\(leaf)") }  // as in removeTree
        do { try JailSystem.removeDirectory(directory) } catch {
            throw .failed("cgroup \(directory) of an earlier jail still exists and cannot be removed", error)
        }
    }

    static func makeDirectory(_ path: String) throws(JailError) {
        try JailError.wrap { () throws(SystemError) in try ensureDirectory(path, mode: 0o755) }
    }

    /// One value to a cgroup control file (cgroup.procs, subtree_control, a limit).
    static func writeControl(_ text: String, to path: String) throws(JailError) {
        try JailError.wrap { () throws(SystemError) in try writeKernelFile(path, text) }
    }
}
