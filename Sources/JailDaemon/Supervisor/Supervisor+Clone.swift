import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Everything opened for the clone, so that whatever fails, one place closes it.
struct CloneChannels {
    let ready: Pipe
    let logs: Pipe
    let lifeline: Pipe
    let boot: Pipe
    /// `programs/cgroup.procs` of each hierarchy: init's spawn path writes to them.
    let programCgroups: [Int32]
    /// `sessions/cgroup.procs` of each hierarchy with a helpers' memory limit.
    let sessionCgroups: [Int32]
    /// The rootfs as a detached tree, idmapped by the supervisor once init's user namespace
    /// has its maps, attached by init in its own mount namespace (see `idmapRoot`).
    let rootTree: FileDescriptor?
    /// A root on a base: detached trees of the base and of STATE/NAME (upper and work), idmapped
    /// once init has its maps; the overlay over them is mounted on `rootTree` (see `mountOverlay`).
    let layerTrees: [FileDescriptor]
    /// `--init`: `programs/payload/cgroup.procs` of the unified hierarchy (JailCgroups.delegatePayload).
    var payloadCgroup: Int32? = nil

    /// The ends init took: closed in the supervisor right after the clone.
    func closeInitEnds() {
        for fd in [ready.write, logs.write, lifeline.read, boot.write] { fd.closeQuietly() }
    }

    /// What only the setup needed (init has its own copies).
    func closeSetup() {
        for fd in programCgroups + sessionCgroups + (payloadCgroup.map { [$0] } ?? []) { closeDescriptor(fd) }
        rootTree?.closeQuietly()
        for fd in layerTrees { fd.closeQuietly() }
    }

    /// The supervisor's ends, when the start failed.
    func closeSupervisorEnds() {
        for fd in [ready.read, logs.read, lifeline.write, boot.read] { fd.closeQuietly() }
    }
}

extension Supervisor {
    /// clone(2) into the new namespaces; the child becomes init and never returns here. The
    /// steps: open the channels, clone, give init its ids and root, say "G" (init mounts its
    /// file system), meanwhile make its cgroups and port filter unless they were made before
    /// the clone (`cgroupsBeforeClone`), move init into them, say "C" (init forks nothing
    /// before), wait for its readiness. Any failure undoes all of it in the one `catch` below,
    /// and the caller's (which removes `cgroups`). Returns init and the exit status of `--rc`,
    /// which init ran before it reported ready ("R" + status), and the id of the network
    /// counters' map (nil: the jail has none).
    func cloneInit(listener: FileDescriptor, control: FileDescriptor?, cgroups: inout JailCgroups?,
                   range: UInt32?) throws(JailError) -> (handle: InitHandle, rcStatus: Int32?, traffic: UInt32?) {
        // Unreadable, the count is the start's error with its path, not a thread count of -1.
        let threads = try JailError.wrap { () throws(SystemError) in try threadCount() }
        guard threads == 1 else { throw .threaded(threads) }
        let channels = try openChannels(cgroups: cgroups, range: range)
        var pid: pid_t = 0
        var rcStatus: Int32?
        var traffic: UInt32?
        var reaped = false
        let birthCgroups = openBirthCgroups(cgroups)
        defer {
            if let birthCgroups {
                close(birthCgroups.initScope)
                if let root = birthCgroups.namespaceRoot { close(root) }
            }
        }
        var bornInCgroup = false
        do {
            pid = try clone(channels, listener: listener, control: control,
                            owner: range.map { UserRange.namespaceOwner(start: $0) }, birthCgroups: birthCgroups, born: &bornInCgroup)
            if bornInCgroup {
                try settleBornInit(pid, cgroups: cgroups, channels: channels, range: range, reaped: &reaped)
            } else {
                try prepare(init: pid, channels: channels, range: range)
                try tell(init: pid, .go, channels: channels, reaped: &reaped)
                if !cgroupsBeforeClone {
                    if cgroups == nil { cgroups = try makeCgroups() }
                    try PortFilter.attach(configuration, jail: cgroupName, socket: location.socketPath, to: cgroups)  // every jail: the post-bind check
                }
                if configuration.cgroupNamespace {
                    // Init makes its cgroup namespace while in `jail/NAME` ("C" … "N"), then moves
                    // on to `init.scope`, and the v2 limits follow ("L"): see Init/CgroupView.swift.
                    try joinCgroups(init: pid, cgroups: cgroups, channels: channels, reaped: &reaped) { () throws(JailError) in
                        try cgroups?.attachRoot(pid)
                    }
                    try tell(init: pid, .cgroupsJoined, channels: channels, reaped: &reaped)
                    try awaitCgroupNamespace(pid, channels: channels, reaped: &reaped)
                    try joinCgroups(init: pid, cgroups: cgroups, channels: channels, reaped: &reaped) { () throws(JailError) in
                        try join(init: pid, cgroups: cgroups)
                        try cgroups?.enableUnified()
                    }
                    try tell(init: pid, .limitsSet, channels: channels, reaped: &reaped)
                } else {
                    try joinCgroups(init: pid, cgroups: cgroups, channels: channels, reaped: &reaped) { () throws(JailError) in
                        try join(init: pid, cgroups: cgroups)
                    }
                    try tell(init: pid, .cgroupsJoined, channels: channels, reaped: &reaped)
                }
            }
            // While init finishes its start (hardening, --rc): attached after its "R", the counters'
            // map and two programs were a quarter of a millisecond between init's readiness and the
            // start's return (issue 36). A failure from here on is undone with the port filter.
            traffic = NetworkCounters.attach(to: cgroups)
            rcStatus = try awaitInit(pid, channels: channels, reaped: &reaped)
        } catch {
            // Never a signal to a reaped pid: it may be another process's by now.
            if pid > 0 && !reaped {
                killChild(pid)
                waitForChild(pid)
            }
            channels.closeSetup()
            channels.closeSupervisorEnds()
            throw error
        }
        channels.closeSetup()
        // The lifeline's write end stays open (CLOEXEC) for the supervisor's whole life.
        return (InitHandle(pid: pid, pidfd: nil, logPipe: channels.logs.read, bootOutput: channels.boot.read, cgroups: cgroups),
                rcStatus, traffic)
    }

    func openChannels(cgroups: JailCgroups?, range: UInt32?) throws(JailError) -> CloneChannels {
        var pipes: [Pipe] = []
        var programCgroups: [Int32] = []
        var sessionCgroups: [Int32] = []
        var trees: [FileDescriptor] = []
        var payloadCgroup: Int32?
        do throws(JailError) {
            if configuration.payload != nil {
                // root inside is the range's first id (UserRange.mapLines).
                guard let cgroups, let range else { throw .startFailed("--init needs the user namespace and cgroup v2") }
                payloadCgroup = try cgroups.delegatePayload(owner: range)
            }
            for _ in 0..<4 { pipes.append(try JailError.wrap { () throws(SystemError) in try Pipe.make() }) }
            programCgroups = try cgroups?.openProgramProcs() ?? []
            sessionCgroups = try cgroups?.openSessionProcs() ?? []
            if configuration.mapsRange, let root = configuration.root {
                let layers = configuration.overlay
                for path in [root] + (layers.map { [$0.lower, Preflight.parentDirectory($0.upper)] } ?? []) {
                    trees.append(try openLayerTree(path))
                }
            }
            return CloneChannels(ready: pipes[0], logs: pipes[1], lifeline: pipes[2], boot: pipes[3],
                                 programCgroups: programCgroups, sessionCgroups: sessionCgroups, rootTree: trees.first,
                                 layerTrees: Array(trees.dropFirst()), payloadCgroup: payloadCgroup)
        } catch {
            if let payloadCgroup { closeDescriptor(payloadCgroup) }
            for p in pipes { p.close() }
            for fd in trees { fd.closeQuietly() }
            for fd in programCgroups + sessionCgroups { closeDescriptor(fd) }
            throw error
        }
    }

    /// Returns init's pid in the supervisor; in the child, runs init. With a range, the jail's
    /// user namespace is created by `owner`, the range's last id (UserRange.namespaceOwner), so
    /// the kernel's per-user counts of everything in the jail are that id's, not host root's.
    func clone(_ channels: CloneChannels, listener: FileDescriptor, control: FileDescriptor?,
               owner: UInt32?, birthCgroups: (initScope: Int32, namespaceRoot: Int32?)? = nil,
               born: inout Bool) throws(JailError) -> pid_t {
        var flags = UInt(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC)
        if configuration.inUserNamespace { flags |= UInt(CLONE_NEWUSER) }
        var initConfiguration = configuration
        // Per user namespace, read and written in the reader's own: init, in the new one,
        // could only see 2^31-1 there, so the host's values are read here and written by init.
        if owner != nil { initConfiguration.userNamespaceLimits = try JailError.wrap { () throws(SystemError) in try UserNamespaceLimit.host() } }
        let supervisorsLoginUID = configuration.rootless ? nil : AuditIdentity.handOver(account.uid)
        var pid: pid_t = -1
        if let birthCgroups {
            // Born in init.scope (Supervisor+BirthCgroup.swift).
            let scope = birthCgroups.initScope
            pid = owner.map { cj_clone_owned_by_into_cgroup(flags, $0, scope) } ?? cj_clone_into_cgroup(flags, scope)
            born = pid >= 0
            // A kernel without clone3's cgroup (before 5.7) or a refusal of it: the moves, as before.
            if pid < 0 { log.debug("clone3 into the jail's cgroup: \(Errno(rawValue: errno)); init is moved there") }
        }
        if pid < 0 { pid = owner.map { cj_clone_owned_by(flags, $0) } ?? cj_clone(flags) }
        if pid != 0 { AuditIdentity.putBack(supervisorsLoginUID) }
        if pid == 0 {
            let configuration = initConfiguration
            let initChannels = InitChannels(listener: listener, ready: channels.ready.write, lifeline: channels.lifeline.read,
                                            log: channels.logs.write, bootOutput: channels.boot.write,
                                            programCgroups: channels.programCgroups,
                                            adoption: control.map { ($0, channels.logs.read, channels.boot.read) },
                                            sessionCgroups: channels.sessionCgroups, rootTree: channels.rootTree,
                                            payloadCgroup: channels.payloadCgroup,
                                            cgroupNamespaceRoot: born ? birthCgroups?.namespaceRoot : nil)
            Init.run(configuration: configuration, account: account, channels: initChannels)
        }
        let error = errno
        channels.closeInitEnds()
        if pid < 0 {
            if configuration.rootless {
                throw .rootless("cannot create a user namespace: \(Errno(rawValue: error)) "
                    + "(see user.max_user_namespaces; or run jaild as root)")
            }
            if let owner {
                throw .userNamespace("cannot create the jail's user namespace as its owner, uid \(owner) "
                    + "(setresuid, capset, clone): \(Errno(rawValue: error)) (see user.max_user_namespaces; or use --no-userns)")
            }
            throw .system(SystemError("clone", errno: Errno(rawValue: error)))
        }
        return pid
    }

    /// Into its user namespace's ids, the root tree idmapped: what init needs to mount.
    func prepare(init pid: pid_t, channels: CloneChannels, range: UInt32?) throws(JailError) {
        if configuration.rootless { try mapUser(into: pid) }
        if let range {
            try mapRange(range, into: pid)
            if let tree = channels.rootTree {
                if channels.layerTrees.count == 2 {
                    try mountOverlay(on: tree, lower: channels.layerTrees[0], state: channels.layerTrees[1], range: range)
                } else {
                    try idmapRoot(tree, like: pid)
                }
            }
        }
    }

    /// "N" from init: its cgroup namespace exists (or the reason it failed, then it exits).
    func awaitCgroupNamespace(_ pid: pid_t, channels: CloneChannels, reaped: inout Bool) throws(JailError) {
        let first: [UInt8]
        do { first = try readByte(channels.ready.read) } catch {
            throw .failed("cannot read init's word on its ready pipe", error)
        }
        if first.first == CgroupNamespaceMade.byte { return }
        if first.first == UInt8(ascii: "E") {
            // Readiness.failed: "E" and the reason, up to the pipe's end (init exits).
            var reason: [UInt8] = []
            while true {
                let chunk: [UInt8]?
                do { chunk = try channels.ready.read.readChunk(max: 4096) } catch { break }  // what came is the reason
                guard let chunk else { continue }
                if chunk.isEmpty { break }
                reason += chunk
            }
            throw .startFailed(String(decoding: reason, as: UTF8.self))
        }
        throw .startFailed("the jail's init exited during setup (status \(reap(init: pid, reaped: &reaped)))")
    }

    /// One byte from a blocking pipe: empty at its end.
    func readByte(_ pipe: FileDescriptor) throws(SystemError) -> [UInt8] {
        while true {
            if let chunk = try pipe.readChunk(max: 1) { return chunk }
        }
    }

    /// Waits for init, which has exited or is about to (its pipes closed): its shell-style status.
    func reap(init pid: pid_t, reaped: inout Bool) -> Int32 {
        let status = waitForChild(pid)
        reaped = true
        return status.map(exitCode(ofStatus:)) ?? -1
    }

    /// Says `word` on the lifeline. A write that fails means init is gone (EPIPE: it failed its
    /// setup and exited): its reason, on the ready pipe, ends the start; so does any other failure,
    /// since init waits for this word and would otherwise wait for ever.
    func tell(init pid: pid_t, _ word: LifelineWord, channels: CloneChannels, reaped: inout Bool) throws(JailError) {
        do { try word.send(on: channels.lifeline.write) } catch {
            guard error.errno == .brokenPipe else { throw .failed("cannot write to init's lifeline", error) }
            if case .failed(let reason) = Readiness.receive(from: channels.ready.read) { throw .startFailed(reason) }
            throw .startFailed("the jail's init exited during setup (status \(reap(init: pid, reaped: &reaped)))")
        }
    }

    /// A move into cgroups, while init may have failed its mounts meanwhile (and exited): its reason first.
    func joinCgroups(init pid: pid_t, cgroups: JailCgroups?, channels: CloneChannels, reaped: inout Bool,
                     _ move: () throws(JailError) -> Void) throws(JailError) {
        do { try move() } catch {
            if exitedChildStatus(pid) != nil {
                reaped = true
                if case .failed(let reason) = Readiness.receive(from: channels.ready.read) { throw .startFailed(reason) }
            }
            throw error
        }
    }

    /// Into its cgroups and out of the OOM killer's reach, before it forks anything.
    func join(init pid: pid_t, cgroups: JailCgroups?) throws(JailError) {
        try cgroups?.attachInit(pid)
        shieldFromOOMKiller(init: pid)
    }

    func shieldFromOOMKiller(init pid: pid_t) {
        // Needs CAP_SYS_RESOURCE, which some hosts (containers) withhold: then the memory
        // limit, which init is outside of, is its protection.
        if !configuration.rootless {
            do { try writeKernelFile("/proc/\(pid)/oom_score_adj", "-1000") } catch {
                log.debug("init stays killable by the OOM killer: \(error)")
            }
        }
    }

    /// Init's readiness: "R" with the exit status of `--rc` (if it has one), or the reason it
    /// failed (then it has exited).
    func awaitInit(_ pid: pid_t, channels: CloneChannels, reaped: inout Bool) throws(JailError) -> Int32? {
        switch Readiness.receive(from: channels.ready.read) {
        case .ready(let rcStatus):
            return Int32(rcStatus)
        case .failed(let reason):
            throw .startFailed(reason)
        case nil:
            throw .startFailed("the jail's init exited during setup (status \(reap(init: pid, reaped: &reaped)))")
        }
    }

    /// Rootless: the user's own uid and gid, and nothing else, become the jail's (its own, or
    /// 0 with --map-root). setgroups is denied first, as the kernel requires for a user.
    func mapUser(into pid: pid_t) throws(JailError) {
        let inside = Rootless.insideIDs(mapRoot: configuration.mapRoot)
        try JailError.wrap { () throws(SystemError) in
            try writeKernelFile("/proc/\(pid)/setgroups", "deny")
            try writeKernelFile("/proc/\(pid)/uid_map", "\(inside.uid) \(getuid()) 1")
            try writeKernelFile("/proc/\(pid)/gid_map", "\(inside.gid) \(getgid()) 1")
        }
    }

    /// Root's user namespace: the jail user's uid and gid are themselves, every other id of
    /// 0–65535 is the jail's range. Written by host root, so setgroups stays allowed and
    /// supplementary groups work as without a user namespace.
    func mapRange(_ start: UInt32, into pid: pid_t) throws(JailError) {
        try JailError.wrap { () throws(SystemError) in
            try writeKernelFile("/proc/\(pid)/uid_map", UserRange.mapLines(keeping: account.uid, start: start))
            try writeKernelFile("/proc/\(pid)/gid_map", UserRange.mapLines(keeping: account.gid, start: start))
        }
    }

    /// The rootfs through init's id mapping: on-disk uid 0 is root inside, on-disk 61000 is
    /// 61000, and nothing on disk changes. mount_setattr(MOUNT_ATTR_IDMAP) needs CAP_SYS_ADMIN
    /// over the file system's user namespace (the host's), which init, root only in its own,
    /// lacks; so host root does it here, on the detached tree opened before the clone (init
    /// holds the same tree through the fd it inherited) and init attaches it with move_mount
    /// in its mount namespace. LXC and crun split the work the same way (the privileged side
    /// creates the idmapped mount, the container side attaches it); sharing the fd across the
    /// clone spares us passing it over a socket.
    func idmapRoot(_ tree: FileDescriptor, like pid: pid_t) throws(JailError) {
        let path = "/proc/\(pid)/ns/user"
        let userns = try JailError.wrap { () throws(SystemError) in try openFile(path, O_RDONLY) }
        defer { userns.closeQuietly() }
        if cj_idmap_tree(tree.rawValue, userns.rawValue) < 0 {
            let error = Errno(rawValue: errno)
            let root = configuration.root ?? "/"
            throw .userNamespace("the file system of \(root) (\(fileSystemName(root))) cannot be idmapped (\(error)): "
                + "use --no-userns, or shift the rootfs's owners into the jail's range")
        }
    }

    /// A root on a base: an overlay mount cannot be idmapped (EINVAL), but its layers can
    /// (Linux 5.19). Host root idmaps detached trees of the base and of STATE/NAME, makes the
    /// overlay over them (fsconfig with layer descriptors, Linux 6.8) and mounts it on the root
    /// tree init inherited. overlayfs works in its layers with its mounter's credentials (host
    /// root, fsuid 0), which init's mapping lacks (EOVERFLOW: "failed to create directory
    /// work/work; mounting read-only"); so the layers' mapping is init's plus host uid 0 as
    /// on-disk id 4294967294, in a user namespace no process is in. Only overlayfs itself
    /// acts as that id (its work directory); the jail's processes write as their own ids, which
    /// land on disk as with the idmapped rootfs (root inside: 0). The jail never sees that id.
    func mountOverlay(on tree: FileDescriptor, lower: FileDescriptor, state: FileDescriptor, range: UInt32) throws(JailError) {
        let mounter = "\(UInt32.max - 1) 0 1\n"
        // This namespace stays host root's (cj_make_userns): no process is ever in it, so nothing
        // is charged to its owner but the one namespace, given back when the mount goes.
        let userns = cj_make_userns(UserRange.mapLines(keeping: account.uid, start: range) + mounter,
                                    UserRange.mapLines(keeping: account.gid, start: range) + mounter)
        if userns < 0 { throw .system(.last("user namespace for the overlay layers", path: configuration.base ?? "")) }
        defer { closeDescriptor(userns) }
        let layers = configuration.overlay
        for (fd, path) in [(lower, layers?.lower ?? ""), (state, Preflight.parentDirectory(layers?.upper ?? ""))]
        where cj_idmap_tree(fd.rawValue, userns) < 0 {
            let error = Errno(rawValue: errno)
            throw .userNamespace("the overlay layer \(path) (\(fileSystemName(path))) cannot be idmapped (\(error)): use --no-userns")
        }
        let overlay = cj_overlay_open_layers(lower.rawValue, state.rawValue)
        if overlay < 0 { throw .system(.last("overlay", path: configuration.root ?? "")) }
        defer { closeDescriptor(overlay) }
        if cj_mount_onto_tree(overlay, tree.rawValue) < 0 { throw .system(.last("move_mount", path: configuration.root ?? "")) }
    }

    /// The type of the file system at `path` as /proc/self/mountinfo names it.
    func fileSystemName(_ path: String) -> String {
        // Only for the wording of an error already being reported: unknown when it cannot be told.
        let info: stat
        do {
            let file = try openFile(path, CJ_O_PATH)
            defer { file.closeQuietly() }
            info = try file.fileStatus()
        } catch { return "unknown" }
        guard let text = try? readText("/proc/self/mountinfo") else { return "unknown" }
        let device = "\(info.st_dev >> 8 & 0xfff):\((info.st_dev & 0xff) | (info.st_dev >> 12 & 0xfff00))"
        // The last mount of that device is the one on top; its type is the field after " - ".
        let fields = text.split(separator: "\n").map { $0.split(separator: " ") }
            .last { $0.dropFirst(2).first.map(String.init) == device }
        guard let fields, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { return "unknown" }
        return String(fields[dash + 1])
    }
}
