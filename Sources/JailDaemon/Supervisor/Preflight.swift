import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Checks made on the host before anything is created, so a bad command line fails with one
/// clear line and leaves nothing behind.
public enum Preflight {
    /// Verifies privileges and the root, and resolves the jail's account from the root's own
    /// /etc/passwd and /etc/group (read with RESOLVE_IN_ROOT: a symlink in the jail cannot
    /// make jaild read a host file).
    public static func check(_ configuration: JailConfiguration) throws(JailError) -> Account {
        if configuration.rootless { try Rootless.check(configuration) }
        let root = configuration.root ?? "/"
        guard let info = try JailError.wrap({ () throws(SystemError) in try fileStatus(root) }) else {
            throw .badRoot("root \(root) does not exist")
        }
        guard isDirectory(info) || (isSymlink(info) && isDirectoryFollowing(root)) else {
            throw .badRoot("root \(root) is not a directory")
        }
        if configuration.mapsRange && configuration.root != nil { try checkPrivate(root: root) }
        for mount in configuration.mounts where (try? fileStatus(mount.hostPath)) == nil {
            throw .badMount("host path \(mount.hostPath) of mount \(mount.jailPath) does not exist")
        }
        // A root made from a base is empty until init mounts the overlay: read the merged
        // tree through a detached overlay mount that nobody else can see.
        let disk = try DiskStorage.prepared(for: configuration)
        let rootFD = try configuration.overlay.map { layers throws(JailError) in
            try openOverlay(layers, uid: configuration.uid, disk: disk)
        }
            ?? open(root, CJ_O_PATH | O_DIRECTORY | O_CLOEXEC)
        if rootFD < 0 { throw .system(.last("open", path: root)) }
        defer { close(rootFD) }
        let passwd: String
        do { passwd = try readInRoot(rootFD, "/etc/passwd") } catch {
            throw .badRoot("cannot read \(root)/etc/passwd: \(error.errno)")
        }
        let group = (try? readInRoot(rootFD, "/etc/group")) ?? ""
        let account: Account
        do { account = try Account.resolve(configuration, passwd: passwd, group: group) } catch { throw .account(error) }
        let shell = cj_open_in_root(rootFD, account.shell, CJ_O_PATH)
        if shell < 0 {
            throw .badRoot("shell \(account.shell) of \(account.name) does not exist in \(root): \(Errno(rawValue: errno))")
        }
        close(shell)
        return account
    }

    /// Files root inside creates in the rootfs are uid 0 on disk (the idmapped mount), so a
    /// setuid-root file planted in its /tmp would make any host user who can reach it root.
    /// Hence some directory from / to the root must deny search to others.
    static func checkPrivate(root: String) throws(JailError) {
        guard let resolved = realpath(root, nil) else { throw .system(.last("realpath", path: root)) }
        let path = String(cString: resolved)
        free(resolved)
        var prefix = ""
        var modes: [(String, mode_t)] = []
        for component in [""] + path.split(separator: "/").map(String.init) {
            prefix = component.isEmpty ? "/" : (prefix == "/" ? "" : prefix) + "/" + component
            var info = stat()
            if stat(prefix, &info) < 0 { throw .system(.last("stat", path: prefix)) }
            modes.append((prefix, info.st_mode))
        }
        if let reason = publicRootReason(root: path, modes: modes) { throw .badRoot(reason) }
    }

    /// Why a root is reachable by every host user, or nil: `modes` are those of each directory
    /// from / to the root.
    static func publicRootReason(root: String, modes: [(String, mode_t)]) -> String? {
        if modes.contains(where: { $0.1 & S_IXOTH == 0 }) { return nil }
        let mode = String((modes.last?.1 ?? 0) & 0o7777, radix: 8)
        return "root \(root) (mode \(mode)) is reachable by every host user, and files root inside creates there are "
            + "root's on the host: make a directory above it private (e.g. chmod 0700 \(parentDirectory(root))), or use --no-userns"
    }

    static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// `uid`: the jail being started. Its own running jail on these layers is not refused here:
    /// the start adopts it if its supervisor is gone, or the pid file lock refuses the start.
    static func openOverlay(_ layers: OverlayLayers, uid: UInt32, disk: DiskStorage? = nil) throws(JailError) -> Int32 {
        if let c = layers.unsafeCharacter { throw .badRoot("overlay layer paths must not contain '\(c)'") }
        // An image holds upper/ and work/ itself (Disk/DiskImage.swift).
        let onImage = disk?.limit.backend == .image
        for path in [layers.lower] + (onImage ? [] : [layers.upper, layers.work]) where !isDirectoryFollowing(path) {
            throw .badRoot("overlay layer \(path) of root \(layers.target) is not a directory")
        }
        // A second overlay on layers in use is "undefined behaviour" to the kernel: refuse first.
        if let running = JailState.all().first(where: {
            $0.alive && BindMount.normalize($0.state.root) == layers.target && $0.state.uid != uid
        }) {
            throw .alreadyRunning(socket: running.state.socket, pid: running.state.supervisor)
        }
        if let fd = try disk?.openOverlay(lower: layers.lower) { return fd }
        let fd = cj_overlay_open(layers.lower, layers.upper, layers.work)
        if fd < 0 { throw .system(.last("overlay", path: layers.target)) }
        return fd
    }

    static func isDirectoryFollowing(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && isDirectory(info)
    }

    static func readInRoot(_ rootFD: Int32, _ path: String) throws(SystemError) -> String {
        let fd = try syscall("openat2", path: path) { cj_open_in_root(rootFD, path, O_RDONLY) }
        defer { close(fd) }
        return String(decoding: try readAll(FileDescriptor(rawValue: fd)), as: UTF8.self)
    }
}
