import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The file system of a jail as a list of steps: data first, so the plan is unit-tested
/// without privileges, then `apply()` inside the new mount namespace.
public struct MountPlan: Equatable, Sendable {
    public enum Step: Equatable, Sendable {
        /// Stop mount events from flowing back to the host: mount --make-rprivate /.
        case makePrivate
        /// Root's user namespace: the rootfs tree the supervisor idmapped, attached at the path.
        case attachIdmappedRoot(String)
        /// Root's user namespace: from host root's ids, which have no meaning inside (what it
        /// created would fail with EOVERFLOW), to the namespace's root, without host groups.
        case becomeNamespaceRoot
        case makeDirectory(String, mode: UInt32)
        case mount(source: String, target: String, type: String, flags: UInt, data: String?)
        case makeCharacterDevice(String, major: UInt32, minor: UInt32)
        /// Rootless (mknod is not allowed): the host's device, bound onto an empty file.
        case bindDevice(host: String, target: String)
        case symlink(target: String, at: String)
        /// A host path onto a target inside the root; the target must not pass a symlink.
        /// `nosuidNodev`: setuid bits and devices of the host path do nothing inside.
        case bind(host: String, target: String, root: String, readOnly: Bool, nosuidNodev: Bool)
        /// Hides a kernel file or directory of /proc or /sys (skipped if this kernel lacks it):
        /// /dev/null over a file, an empty read-only tmpfs over a directory.
        case mask(String, null: String)
        /// Makes a path read-only (skipped if missing): bound onto itself, remounted ro.
        case readOnly(String)
        /// The per-namespace limits of /proc/sys/user (in the directory given) set in the jail's
        /// own user namespace, where they start at 2^31-1; before /proc/sys turns read-only.
        case limitUserNamespace(String, [UserNamespaceLimit])
        /// pivot_root into the root and detach the old root.
        case pivot(String)
        /// A copy-on-write root: overlayfs of a read-only base and the jail's own upper layer,
        /// mounted in the jail's mount namespace only (the host never sees the merged tree).
        case overlay(lower: String, upper: String, work: String, target: String)
    }

    public var steps: [Step]

    /// The devices a jail gets: enough for programs, nothing that reaches hardware.
    static let devices: [(name: String, major: UInt32, minor: UInt32)] = [
        ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
    ]

    /// Kernel views that leak host memory or state or act on the host: hidden, as runc does.
    static let masked = [
        "/proc/kcore", "/proc/kallsyms", "/proc/keys", "/proc/key-users", "/proc/timer_list",
        "/proc/sched_debug", "/proc/latency_stats", "/proc/sysrq-trigger", "/proc/kmsg",
        "/proc/config.gz", "/proc/vmallocinfo", "/proc/pagetypeinfo", "/proc/slabinfo",
        "/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/driver", "/sys/firmware", "/sys/kernel/debug",
        "/sys/kernel/security",
    ]
    /// Host-wide settings: readable, never writable, even by root inside.
    static let readOnlyInProc = ["/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"]

    static let nosuidNodevNoexec = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)

    /// A tmpfs size in KiB, rounded up to whole pages.
    static func kibibytes(_ bytes: UInt64) -> UInt64 { (bytes + 4095) / 4096 * 4 }

    public init(configuration: JailConfiguration) {
        var steps: [Step] = [.makePrivate]
        guard let root = configuration.root.map(BindMount.normalize) else {
            // No root: namespaces only, as in 2014, but with a /proc of the new PID namespace
            // so ps shows the jail's processes.
            steps.append(.mount(source: "proc", target: "/proc", type: "proc", flags: Self.nosuidNodevNoexec, data: nil))
            if !configuration.userNamespaceLimits.isEmpty {
                steps.append(.limitUserNamespace("/proc/sys/user", configuration.userNamespaceLimits))
            }
            steps += configuration.mounts.map {
                .bind(host: $0.hostPath, target: $0.jailPath, root: "/", readOnly: $0.readOnly, nosuidNodev: !$0.allowSetuid)
            }
            self.steps = steps
            return
        }
        let idmapped = configuration.mapsRange
        var planRoot = root
        var inRoot = { (path: String) in planRoot == "/" ? path : planRoot + path }
        // pivot_root needs the new root to be a mount point. In root's user namespace it is the
        // idmapped tree, so that on-disk owners are the owners inside.
        if configuration.mapsRange {
            steps.append(.attachIdmappedRoot(root))
            // --init: the payload may bind-mount / in its own mount namespace; the root's nodev
            // is then locked (a child user namespace cannot clear it), so no device node the
            // rootfs holds beneath the jail's /dev opens there.
            if configuration.payload != nil { steps.append(.mount(source: "", target: root, type: "", flags: UInt(MS_REMOUNT | MS_BIND | MS_NODEV), data: nil)) }
        } else {
            if let layers = configuration.overlay {
                steps.append(.overlay(lower: layers.lower, upper: layers.upper, work: layers.work, target: layers.target))
            }
            steps.append(.mount(source: root, target: root, type: "", flags: UInt(MS_BIND | MS_REC), data: nil))
        }
        for directory in ["/proc", "/sys", "/dev"] { steps.append(.makeDirectory(inRoot(directory), mode: 0o755)) }
        steps.append(.mount(source: "proc", target: inRoot("/proc"), type: "proc", flags: Self.nosuidNodevNoexec, data: nil))
        if idmapped {
            // Root inside, the jail's range on the host, cannot pass the private directory
            // above ROOT (nor any other of host root's 0700 ones). So: host sources are opened
            // first (see apply), proc is mounted (a user namespace may mount proc only while
            // one is visible), then pivot and become the namespace's root; the rest is inside.
            steps.append(.pivot(root))
            steps.append(.becomeNamespaceRoot)
            planRoot = "/"
            inRoot = { $0 }
        }
        if configuration.inUserNamespace {
            // A fresh sysfs needs a network namespace owned by the jail's user namespace; the
            // jail shares the host's network, so the host's /sys, read-only, instead.
            steps.append(.bind(host: "/sys", target: "/sys", root: planRoot, readOnly: true, nosuidNodev: true))
        } else {
            steps.append(.mount(source: "sysfs", target: inRoot("/sys"), type: "sysfs",
                                flags: Self.nosuidNodevNoexec | UInt(MS_RDONLY), data: nil))
        }
        // A fresh /dev, never the host's: only harmless devices and the jail's own ptys.
        steps.append(.mount(source: "tmpfs", target: inRoot("/dev"), type: "tmpfs",
                            flags: UInt(MS_NOSUID | MS_NOEXEC), data: "mode=755,size=65536k"))
        for device in Self.devices {
            // mknod is not allowed in a user namespace: the host's node, owned by host root,
            // which root inside cannot chmod or chown (its owner has no id in the jail).
            steps.append(configuration.inUserNamespace
                ? .bindDevice(host: "/dev/" + device.name, target: inRoot("/dev/" + device.name))
                : .makeCharacterDevice(inRoot("/dev/" + device.name), major: device.major, minor: device.minor))
        }
        steps.append(.makeDirectory(inRoot("/dev/pts"), mode: 0o755))
        steps.append(.mount(source: "devpts", target: inRoot("/dev/pts"), type: "devpts",
                            flags: UInt(MS_NOSUID | MS_NOEXEC),
                            data: "newinstance,ptmxmode=0666,mode=0620,\(configuration.rootless ? "" : "gid=5,")max=\(configuration.maxPtys)"))
        steps.append(.symlink(target: "pts/ptmx", at: inRoot("/dev/ptmx")))
        steps.append(.makeDirectory(inRoot("/dev/shm"), mode: 0o1777))
        steps.append(.mount(source: "shm", target: inRoot("/dev/shm"), type: "tmpfs",
                            flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=1777,size=\(Self.kibibytes(configuration.shmBytes))k"))
        // /run as a fresh tmpfs, as on a booted system: daemons make /run/sshd, pid files and
        // sockets there, and nothing of an earlier start is left in it.
        steps.append(.makeDirectory(inRoot("/run"), mode: 0o755))
        steps.append(.mount(source: "tmpfs", target: inRoot("/run"), type: "tmpfs",
                            flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=755,size=65536k"))
        for (name, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                               ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
            steps.append(.symlink(target: target, at: inRoot("/dev/" + name)))
        }
        steps += Self.masked.map { .mask(inRoot($0), null: inRoot("/dev/null")) }
        if configuration.cgroupNamespace {
            // The host's cgroup tree (every jail's name and usage) is under the bound /sys:
            // covered, and the jail's own hierarchies mounted on this tmpfs once its cgroup
            // namespace exists (CgroupView), after which it turns read-only.
            steps.append(.mount(source: "tmpfs", target: inRoot(CgroupView.directory), type: "tmpfs",
                                flags: Self.nosuidNodevNoexec, data: "mode=755,size=64k"))
        }
        if let lxcfs = configuration.lxcfsInUse {
            // lxcfs's files over the kernel's (Configuration/Views.swift): the same files LXC binds.
            steps += LxcfsViews.files.map {
                .bind(host: lxcfs + $0, target: $0, root: planRoot, readOnly: true, nosuidNodev: true)
            }
        }
        if !configuration.userNamespaceLimits.isEmpty {
            steps.append(.limitUserNamespace(inRoot("/proc/sys/user"), configuration.userNamespaceLimits))
        }
        steps += Self.readOnlyInProc.map { .readOnly(inRoot($0)) }
        for mount in configuration.mounts {
            steps.append(.bind(host: mount.hostPath, target: mount.jailPath, root: planRoot, readOnly: mount.readOnly,
                               nosuidNodev: !mount.allowSetuid))
        }
        if !idmapped { steps.append(.pivot(root)) }
        self.steps = steps
    }

    /// Carries out the plan. Runs in the jail's first process, in its new mount namespace.
    /// `rootTree`: the idmapped rootfs for `.attachIdmappedRoot`.
    public func apply(rootTree: FileDescriptor? = nil) throws(JailError) {
        // Reserved: grown one bind at a time, the dictionary's rehashing was a tenth of a
        // millisecond of init's start (perf, issue 36).
        var sources: [Int: Source] = Dictionary(minimumCapacity: steps.count)
        defer { for source in sources.values { source.tree.closeQuietly() } }
        // Every host path is opened before any step: in root's user namespace, later steps
        // run as root inside, which host root's private directories keep out.
        for (index, step) in steps.enumerated() {
            switch step {
            case .bind(let host, _, _, _, _), .bindDevice(let host, _): sources[index] = try Source.open(host)
            default: continue
            }
        }
        for (index, step) in steps.enumerated() {
            try Self.apply(step, rootTree: rootTree, source: sources[index])
            sources.removeValue(forKey: index)?.tree.closeQuietly()
        }
    }

    /// A host path as a detached tree, opened early (see apply).
    struct Source {
        let tree: FileDescriptor
        let isDirectory: Bool

        static func open(_ host: String) throws(JailError) -> Source {
            guard try JailError.wrap({ () throws(SystemError) in try fileStatus(host) }) != nil else {
                throw .badMount("host path \(host) does not exist")
            }
            let descriptor: FileDescriptor
            do { descriptor = try openDetachedTree(host) } catch { throw .system(error) }
            // The tree's own root (a symlink at `host` followed, as the open did): what will be
            // mounted, so what the target must be.
            do {
                return Source(tree: descriptor, isDirectory: JailSystem.isDirectory(try descriptor.fileStatus()))
            } catch {
                descriptor.closeQuietly()
                throw .system(SystemError("fstat", path: host, errno: error.errno))
            }
        }
    }

    static func apply(_ step: Step, rootTree: FileDescriptor?, source: Source?) throws(JailError) {
        do {
            switch step {
            case .makePrivate:
                try syscall("mount(MS_PRIVATE)", path: "/") { mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) }
            case .attachIdmappedRoot(let root):
                guard let rootTree else { throw JailError.startFailed("the idmapped root tree of \(root) is missing") }
                try syscall("move_mount", path: root) { cj_attach_tree(rootTree.rawValue, root) }
            case .becomeNamespaceRoot:
                // The jail's /proc/self/pagemap (for IdlePages) is host root's from now on:
                // opened while init still has host root's ids.
                // Memory only, no reason to fail the start: without it, idle release skips the pages
                // it cannot tell apart (IdlePages), and init keeps them.
                do { try keepPagemapOpen() } catch {
                    log.warning("init keeps its unused pages when idle: open(/proc/self/pagemap): \(error.errno)")
                }
                try syscall("setresuid(0) in the user namespace") { cj_become_root() }
            case .makeDirectory(let path, let mode):
                try ensureDirectory(path, mode: mode_t(mode))
            case .mount(let source, let target, let type, let flags, let data):
                try syscall("mount", path: target) { mount(source, target, type.isEmpty ? nil : type, flags, data) }
            case .makeCharacterDevice(let path, let major, let minor):
                try syscall("mknod", path: path) { cj_mknod_char(path, 0o666, major, minor) }
                // mknod honours the umask; the devices must be usable by everyone.
                try setMode(path, 0o666)
            case .bindDevice(let host, let target):
                // An empty file for the device to cover (a file of that name is reused).
                closeDescriptor(try openFile(target, O_CREAT | O_WRONLY | O_NOFOLLOW, mode: 0o666).rawValue)
                guard let source else { throw SystemError("open_tree", path: host, errno: .badFileDescriptor) }
                try syscall("move_mount", path: target) { cj_attach_tree(source.tree.rawValue, target) }
            case .symlink(let target, let path):
                try makeSymlink(target, at: path)
            case .bind(let host, let target, let root, let readOnly, let nosuidNodev):
                guard let source else { throw SystemError("open_tree", path: host, errno: .badFileDescriptor) }
                try bind(source, target: target, root: root, readOnly: readOnly, nosuidNodev: nosuidNodev)
            case .mask(let path, let null):
                guard let info = try fileStatus(path) else { return }
                if isDirectory(info) {
                    try syscall("mount(mask)", path: path) {
                        mount("tmpfs", path, "tmpfs", UInt(MS_RDONLY) | nosuidNodevNoexec, "size=0,mode=0555")
                    }
                } else {
                    try syscall("mount(mask)", path: path) { mount(null, path, nil, UInt(MS_BIND), nil) }
                }
            case .readOnly(let path):
                guard try fileStatus(path) != nil else { return }
                try syscall("mount(bind)", path: path) { mount(path, path, nil, UInt(MS_BIND | MS_REC), nil) }
                try syscall("mount(remount,ro)", path: path) {
                    mount(nil, path, nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY) | nosuidNodevNoexec, nil)
                }
            case .limitUserNamespace(let directory, let limits):
                for limit in limits { try writeKernelFile("\(directory)/\(limit.name)", "\(limit.value)") }
            case .pivot(let root):
                try pivot(into: root)
            case .overlay(let lower, let upper, let work, let target):
                try syscall("mount(overlay)", path: target) {
                    mount("overlay", target, "overlay", 0, "lowerdir=\(lower),upperdir=\(upper),workdir=\(work)")
                }
            }
        } catch let error as JailError {
            throw error
        } catch let error as SystemError {
            throw .system(error)
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }

    /// Binds a host path onto a path inside the root. Every component of the target is
    /// checked with lstat and created if missing; a symlink anywhere on the way is refused,
    /// so a jail user cannot redirect the mount at the next start (onto /etc, or outside).
    static func bind(_ source: Source, target: String, root: String, readOnly: Bool, nosuidNodev: Bool) throws(JailError) {
        let components = target.split(separator: "/")
        if components.contains("..") { throw .badMount("jail path \(target) contains '..'") }
        var path = root == "/" ? "" : root
        for (index, component) in components.enumerated() {
            path += "/" + component
            let isLast = index == components.count - 1
            if let info = try JailError.wrap({ () throws(SystemError) in try fileStatus(path) }) {
                if isSymlink(info) {
                    throw .badMount("jail path \(target): \(path.dropFirst(root == "/" ? 0 : root.count)) is a symlink")
                }
                if !isLast && !isDirectory(info) { throw .badMount("jail path \(target): \(path) is not a directory") }
            } else if isLast && !source.isDirectory {
                // A file for the bound one to cover, made here and now (O_EXCL).
                try JailError.wrap { () throws(SystemError) in
                    closeDescriptor(try openFile(path, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW, mode: 0o644).rawValue)
                }
            } else {
                try JailError.wrap { () throws(SystemError) in try makeDirectory(path, mode: 0o755) }
            }
        }
        // The walk above gives clear errors; the mount itself goes onto an O_PATH descriptor
        // opened without following any symlink, so a swap after the walk cannot redirect it.
        let rootFD = try JailError.wrap { () throws(SystemError) in try openDirectoryPath(root) }
        defer { rootFD.closeQuietly() }
        let targetFD: Int32
        do { targetFD = try openBeneathWithoutSymlinks(target, in: rootFD, CJ_O_PATH, name: path).rawValue } catch {
            if error.errno == .tooManySymbolicLinkLevels { throw .badMount("jail path \(target) holds a symlink") }
            throw .system(error)
        }
        defer { closeDescriptor(targetFD) }
        try JailError.wrap { () throws(SystemError) in
            try syscall("bind mount", path: path) { cj_attach_tree_onto(source.tree.rawValue, targetFD, readOnly ? 1 : 0, nosuidNodev ? 1 : 0) }
        }
    }

    /// pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then
    /// detaches it, so no directory for the old root is needed and nothing of it stays.
    static func pivot(into root: String) throws(SystemError) {
        try syscall("chdir", path: root) { chdir(root) }
        try syscall("pivot_root", path: root) { cj_pivot_root(".", ".") }
        try syscall("umount2(old root)") { umount2(".", Int32(MNT_DETACH)) }
        try syscall("chdir", path: "/") { chdir("/") }
    }
}

/// One limit of /proc/sys/user (max_inotify_instances, max_user_namespaces, …). The kernel
/// keeps them per user namespace and per user: a new namespace starts with 2^31-1 for each,
/// and what its users use is charged to them there and, up the chain, to the namespace's
/// owner in the host's, where the host's value applies. A jail's owner is an id of its own,
/// so the host's per-user value is the whole jail's budget; inside, each user gets the same
/// value (what a host user gets), which the programs that read these files see instead of
/// 2^31-1. Lower would only split the jail's own budget between its users.
public struct UserNamespaceLimit: Equatable, Sendable {
    public let name: String
    public let value: Int

    public init(name: String, value: Int) {
        self.name = name
        self.value = value
    }

    /// Every max_* of /proc/sys/user as the calling process's user namespace has it (the
    /// supervisor: the host's). One that cannot be read fails the start: the jail would get
    /// 2^31-1 for it, silently.
    public static func host(directory: String = "/proc/sys/user") throws(SystemError) -> [UserNamespaceLimit] {
        var limits: [UserNamespaceLimit] = []
        for name in listDirectory(directory).filter({ $0.hasPrefix("max_") }).sorted() {
            if let value = try readIntegerFile("\(directory)/\(name)") { limits.append(UserNamespaceLimit(name: name, value: value)) }
        }
        return limits
    }
}
