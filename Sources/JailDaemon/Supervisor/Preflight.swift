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
        try checkUIDOwner(configuration)
        try ResourceLimitGrant.raiseOwnHardLimits(to: configuration.resourceLimits, rootless: configuration.rootless)
        let root = configuration.root ?? "/"
        guard let info = try JailError.wrap({ () throws(SystemError) in try fileStatus(root) }) else {
            throw .badRoot("root \(root) does not exist")
        }
        guard isDirectory(info) || (isSymlink(info) && isDirectoryFollowing(root)) else {
            throw .badRoot("root \(root) is not a directory")
        }
        for mount in configuration.mounts where (try? fileStatus(mount.hostPath)) == nil {
            throw .badMount("host path \(mount.hostPath) of mount \(mount.jailPath) does not exist")
        }
        if !configuration.rootless && configuration.root != nil { try checkPrivate(configuration) }
        // A root made from a base is empty until init mounts the overlay: read the merged
        // tree through a detached overlay mount that nobody else can see.
        let disk = try DiskStorage.prepared(for: configuration)
        let rootFD: Int32
        if let layers = configuration.overlay {
            rootFD = try openOverlay(layers, uid: configuration.uid, disk: disk)
        } else {
            rootFD = try JailError.wrap { () throws(SystemError) in try openDirectoryPath(root).rawValue }
        }
        defer { closeDescriptor(rootFD) }
        // The jail's own files, read as untrusted: a FIFO at /etc/passwd must not hang jaild.
        let passwd: String
        do { passwd = try readInRoot(rootFD, "/etc/passwd", root: root) } catch { throw unreadable(error) }
        let group: String
        do { group = try readInRoot(rootFD, "/etc/group", root: root) } catch {
            guard error.isMissing else { throw unreadable(error) }
            group = ""
        }
        let account: Account
        do { account = try Account.resolve(configuration, passwd: passwd, group: group) } catch { throw .account(error) }
        do { try openInRoot(account.shell, root: FileDescriptor(rawValue: rootFD), CJ_O_PATH, name: account.shell).closeQuietly() } catch {
            throw .badRoot("shell \(account.shell) of \(account.name) does not exist in \(root): \(error.errno)")
        }
        return account
    }

    /// Files root inside creates in the rootfs are uid 0 on disk (through the idmapped mount,
    /// or as host root with --no-userns), so a setuid-root file it plants would make any host
    /// user who can reach it root on the host; on a bind mount they are the jail's root ids.
    /// Hence every directory root inside can write — the root (with a base: its upper and
    /// work layers) and every read-write bind mount — must lie beneath a directory only root
    /// can pass: root's, closed to group and others, no ACL entry letting anyone else search.
    static func checkPrivate(_ configuration: JailConfiguration) throws(JailError) {
        let root = configuration.root ?? "/"
        let rootFiles = "files root inside creates there are root's on the host"
        var writable = [("root", root, rootFiles)]
        // With --disk's image backend the layers are inside the image, attached nowhere on the host.
        if let layers = configuration.overlay, configuration.disk?.backend != .image {
            writable += [("overlay layer", layers.upper, rootFiles), ("overlay layer", layers.work, rootFiles)]
        }
        writable += configuration.mounts.filter { !$0.readOnly }.map {
            ("host path of mount \($0.jailPath)", $0.hostPath, "root inside can plant setuid files there")
        }
        for (what, path, consequence) in writable {
            let chain = try JailError.wrap { () throws(SystemError) in try directoryReach(along: path) }
            if let reason = reachReason(what: what, path: path, chain: chain, consequence: consequence) { throw .badRoot(reason) }
        }
    }

    /// Why a directory root inside can write is reachable by a host user other than root, or
    /// nil: `chain` holds the directories from / down to it. One line, with the fix.
    static func reachReason(what: String, path: String, chain: [DirectoryReach],
                            consequence: String = "files root inside creates there are root's on the host") -> String? {
        if chain.contains(where: \.closedToAllButRoot) { return nil }
        // The directory meant to be the private one: the lowest that others cannot pass.
        guard let meant = chain.last(where: { !$0.searchableByOthers }) else {
            let mode = String((chain.last?.mode ?? 0) & 0o7777, radix: 8)
            let parent = parentDirectory(chain.last?.path ?? path)
            return "\(what) \(path) (mode \(mode)) is reachable by every host user, and \(consequence): "
                + "close a directory above it to group and others (chmod 700 \(parent))"
        }
        var who: [String] = []
        var fixes: [String] = []
        if meant.uid != 0 {
            who.append("its owner uid \(meant.uid)")
            fixes.append("chown root \(meant.path)")
        }
        if meant.mode & S_IXGRP != 0 { who.append("group \(meant.gid)") }
        if !meant.aclSearchers.isEmpty {
            who += meant.aclSearchers.map { "\($0) (ACL)" }
            fixes.append("setfacl -b \(meant.path)")
        }
        if meant.mode & S_IXGRP != 0 || !meant.aclSearchers.isEmpty { fixes.append("chmod g-rwx \(meant.path)") }
        let mode = String(meant.mode & 0o7777, radix: 8)
        return "\(what) \(path) is reachable by \(who.joined(separator: ", ")) through \(meant.path) (mode \(mode)), "
            + "and \(consequence): only root may pass a directory above it (\(fixes.joined(separator: " && ")))"
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
        // One state file through the index of roots, not every jail's (JailState.save keeps it).
        if let running = JailState.running(root: layers.target), BindMount.normalize(running.root) == layers.target,
           running.uid != uid {
            throw .alreadyRunning(socket: running.socket, pid: running.supervisor)
        }
        if let fd = try disk?.openOverlay(lower: layers.lower) { return fd }
        do { return try openDetachedOverlay(lower: layers.lower, upper: layers.upper, work: layers.work, name: layers.target).rawValue } catch {
            throw .system(error)
        }
    }

    static func isDirectoryFollowing(_ path: String) -> Bool {
        // A path that cannot be looked at is not a directory to use (as before: stat failed).
        guard let info = try? fileStatusFollowingLinks(path) else { return false }
        return isDirectory(info)
    }

    /// The one line for a jail file jaild would not read: "cannot read ROOT/etc/passwd: No such
    /// file or directory", or "ROOT/etc/passwd is a FIFO, not a regular file".
    static func unreadable(_ error: UntrustedFileError) -> JailError {
        if case .system(let failure) = error { return .badRoot("cannot read \(failure.path ?? "?"): \(failure.errno)") }
        return .badRoot("\(error)")
    }

    /// A file of the jail's tree, read as untrusted: regular files only, bounded in size and
    /// time (readUntrustedFile).
    static func readInRoot(_ rootFD: Int32, _ path: String, root: String) throws(UntrustedFileError) -> String {
        let name = (root == "/" ? "" : root) + path
        return String(decoding: try readUntrustedFile(path, inRoot: rootFD, name: name), as: UTF8.self)
    }
}
