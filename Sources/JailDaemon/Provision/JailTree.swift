import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Writes into a jail's root file system through a descriptor of its root: the detached
/// overlay mount of `jaild create` (so the writes land in the upper layer, copied up by the
/// kernel, whiteouts and all) or a full copy. Every path is resolved with RESOLVE_IN_ROOT, so
/// a symlink the base carries cannot lead a write out of the jail's tree.
struct JailTree {
    let root: Int32
    let description: String

    func read(_ path: String) throws(SystemError) -> String? {
        do { return String(decoding: try readUntrustedFile(path, inRoot: root, name: description + path), as: UTF8.self) } catch {
            if error.isMissing { return nil }
            throw error.systemError
        }
    }

    func status(_ path: String) -> stat? {
        let fd = cj_open_in_root(root, path, CJ_O_PATH | O_NOFOLLOW)
        if fd < 0 { return nil }
        defer { close(fd) }
        var info = stat()
        return fstat(fd, &info) == 0 ? info : nil
    }

    /// Opens the directory holding `path` and gives its last component.
    func parent(of path: String) throws(SystemError) -> (fd: Int32, name: String) {
        guard let slash = path.lastIndex(of: "/") else { preconditionFailure("relative path \(path)") }
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        let fd = try syscall("open", path: description + directory) { cj_open_in_root(root, directory, O_RDONLY | O_DIRECTORY) }
        return (fd, String(path[path.index(after: slash)...]))
    }

    /// Replaces a file as a whole (a new file renamed over the old), keeping `mode` and owner.
    func write(_ path: String, _ text: String, mode: mode_t, uid: UInt32, gid: UInt32) throws(SystemError) {
        let (directory, name) = try parent(of: path)
        defer { close(directory) }
        let temporary = ".\(name).jaild-new"
        unlinkat(directory, temporary, 0)
        let fd = try syscall("create", path: description + path) {
            openat(directory, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        do throws(SystemError) {
            defer { close(fd) }
            try FileDescriptor(rawValue: fd).writeFully(Array(text.utf8))
            try syscall("fchown", path: description + path) { fchown(fd, uid, gid) }
            try syscall("fchmod", path: description + path) { fchmod(fd, mode) }
            try syscall("rename", path: description + path) { renameat(directory, temporary, directory, name) }
        } catch {
            unlinkat(directory, temporary, 0)
            throw error
        }
    }

    /// Writes a file's new text with the old file's mode and owner (or `mode`, root's, if new).
    func rewrite(_ path: String, defaultMode: mode_t, _ edit: (String) -> String) throws(SystemError) {
        let old = try read(path)
        let info = status(path)
        let keep = info.map { $0.st_mode & S_IFMT == S_IFREG } ?? false
        try write(path, edit(old ?? ""), mode: keep ? info!.st_mode & 0o7777 : defaultMode,
                  uid: keep ? info!.st_uid : 0, gid: keep ? info!.st_gid : 0)
    }

    /// A directory owned by uid:gid with `mode`; made if missing, its parents too (root's, 0755).
    func makeDirectory(_ path: String, mode: mode_t, uid: UInt32, gid: UInt32) throws(SystemError) {
        var sofar = ""
        let components = path.split(separator: "/")
        for (index, component) in components.enumerated() {
            let (directory, name) = try parent(of: sofar + "/" + component)
            defer { close(directory) }
            sofar += "/" + component
            if mkdirat(directory, name, 0o755) < 0 && errno != EEXIST { throw SystemError.last("mkdir", path: description + sofar) }
            guard index == components.count - 1 else { continue }
            let fd = try syscall("open", path: description + sofar) {
                openat(directory, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            defer { close(fd) }
            try syscall("fchown", path: description + sofar) { fchown(fd, uid, gid) }
            try syscall("fchmod", path: description + sofar) { fchmod(fd, mode) }
        }
    }

    /// Copies the regular files at the top of `skeleton` (/etc/skel: .bashrc, .profile) into a
    /// new home, as useradd -m does; anything else there (links, directories) is left out.
    func copySkeleton(_ skeleton: String, to home: String, uid: UInt32, gid: UInt32) throws(SystemError) {
        let fd = cj_open_in_root(root, skeleton, O_RDONLY | O_DIRECTORY)
        if fd < 0 { return }
        guard let dir = fdopendir(fd) else {
            close(fd)
            return
        }
        var names: [String] = []
        while let entry = readdir(dir), names.count < 256 {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if entry.pointee.d_type == UInt8(DT_REG) { names.append(name) }
        }
        closedir(dir)
        for name in names {
            guard let text = try read(skeleton + "/" + name), let info = status(skeleton + "/" + name) else { continue }
            try write(home + "/" + name, text, mode: info.st_mode & 0o777, uid: uid, gid: gid)
        }
    }

    /// Gives everything beneath a directory to uid:gid (a home the base made for another uid).
    /// Symlinks are changed themselves, never followed.
    func chownTree(_ path: String, uid: UInt32, gid: UInt32) throws(SystemError) {
        let fd = try syscall("open", path: description + path) { cj_open_in_root(root, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW) }
        try Self.chownBeneath(fd, uid: uid, gid: gid, path: description + path, depth: 0)
    }

    static func chownBeneath(_ fd: Int32, uid: UInt32, gid: UInt32, path: String, depth: Int) throws(SystemError) {
        guard let dir = fdopendir(fd) else {
            close(fd)
            throw SystemError.last("opendir", path: path)
        }
        defer { closedir(dir) }
        guard depth < 64 else { throw SystemError("chown", path: path, errno: .tooManySymbolicLinkLevels) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            try syscall("chown", path: path + "/" + name) { fchownat(fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) }
            if entry.pointee.d_type == UInt8(DT_DIR) {
                let child = try syscall("open", path: path + "/" + name) {
                    openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                }
                try chownBeneath(child, uid: uid, gid: gid, path: path + "/" + name, depth: depth + 1)
            }
        }
    }
}
