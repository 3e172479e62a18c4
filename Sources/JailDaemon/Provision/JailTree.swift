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
    let root: FileDescriptor
    let description: String

    func text(at path: String) throws(SystemError) -> String? {
        do { return String(decoding: try readUntrustedFile(path, inRoot: root.rawValue, name: description + path), as: UTF8.self) } catch {
            if error.isMissing { return nil }
            throw error.systemError
        }
    }

    /// The status of `path` itself (a symlink is not followed); nil when nothing is there.
    func status(_ path: String) throws(SystemError) -> stat? {
        try statusInRoot(path, root: root, name: description + path)
    }

    /// Opens the directory holding `path` and gives its last component.
    func parent(of path: String) throws(SystemError) -> (fd: FileDescriptor, name: String) {
        guard let slash = path.lastIndex(of: "/") else { preconditionFailure("relative path \(path)") }
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        let fd = try openInRoot(directory, root: root, O_RDONLY | O_DIRECTORY, name: description + directory)
        return (fd, String(path[path.index(after: slash)...]))
    }

    /// Replaces a file as a whole (a new file renamed over the old), keeping `mode` and owner.
    func replaceFile(_ path: String, _ text: String, mode: mode_t, uid: UInt32, gid: UInt32) throws(SystemError) {
        let (directory, name) = try parent(of: path)
        defer { closeDescriptor(directory.rawValue) }
        let temporary = ".\(name).jaild-new"
        try removeFile(temporary, in: directory)  // one a failed create left
        let fd: FileDescriptor
        do { fd = try openFile(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode, in: directory) } catch {
            throw SystemError("create", path: description + path, errno: error.errno)
        }
        do throws(SystemError) {
            do throws(SystemError) {
                try fd.writeFully(Array(text.utf8))
            } catch {
                closeDescriptor(fd.rawValue)
                throw SystemError("write", path: description + path, errno: error.errno)
            }
            do throws(SystemError) {
                try fd.setOwner(uid: uid, gid: gid, path: description + path)
                try fd.setMode(mode, path: description + path)
            } catch {
                closeDescriptor(fd.rawValue)
                throw error
            }
            try closeAfterWriting(fd, path: description + path)
            try renameFile(temporary, to: name, in: directory)
        } catch {
            discardFile(temporary, in: directory)
            throw error
        }
    }

    /// Writes a file's new text with the old file's mode and owner (or `mode`, root's, if new).
    func rewrite(_ path: String, defaultMode: mode_t, _ edit: (String) -> String) throws(SystemError) {
        let old = try text(at: path)
        let info = try status(path)
        let keep = info.map { $0.st_mode & S_IFMT == S_IFREG } ?? false
        try replaceFile(path, edit(old ?? ""), mode: keep ? info!.st_mode & 0o7777 : defaultMode,
                  uid: keep ? info!.st_uid : 0, gid: keep ? info!.st_gid : 0)
    }

    /// A directory owned by uid:gid with `mode`; made if missing, its parents too (root's, 0755).
    func makeDirectory(_ path: String, mode: mode_t, uid: UInt32, gid: UInt32) throws(SystemError) {
        var sofar = ""
        let components = path.split(separator: "/")
        for (index, component) in components.enumerated() {
            let (directory, name) = try parent(of: sofar + "/" + component)
            defer { closeDescriptor(directory.rawValue) }
            sofar += "/" + component
            do { try JailSystem.makeDirectory(name, mode: 0o755, in: directory) } catch where error.errno == .fileExists {
                // There already: the open below refuses anything but a directory.
            } catch {
                throw SystemError("mkdir", path: description + sofar, errno: error.errno)
            }
            guard index == components.count - 1 else { continue }
            let fd: FileDescriptor
            do { fd = try openFile(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, in: directory) } catch {
                throw SystemError("open", path: description + sofar, errno: error.errno)
            }
            defer { closeDescriptor(fd.rawValue) }
            try fd.setOwner(uid: uid, gid: gid, path: description + sofar)
            try fd.setMode(mode, path: description + sofar)
        }
    }

    /// Copies the regular files at the top of `skeleton` (/etc/skel: .bashrc, .profile) into a
    /// new home, as useradd -m does; anything else there (links, directories) is left out, as
    /// is a skeleton the base does not have.
    func copySkeleton(_ skeleton: String, to home: String, uid: UInt32, gid: UInt32) throws(SystemError) {
        let directory: FileDescriptor
        do { directory = try openInRoot(skeleton, root: root, O_RDONLY | O_DIRECTORY, name: description + skeleton) } catch {
            if error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory { return }
            throw error
        }
        defer { closeDescriptor(directory.rawValue) }
        let files = try directoryEntries(of: directory, path: description + skeleton, limit: 256).filter(\.isRegularFile)
        for file in files {
            guard let content = try text(at: skeleton + "/" + file.name), let info = try status(skeleton + "/" + file.name) else { continue }
            try replaceFile(home + "/" + file.name, content, mode: info.st_mode & 0o777, uid: uid, gid: gid)
        }
    }

    /// Gives everything beneath a directory to uid:gid (a home the base made for another uid).
    /// Symlinks are changed themselves, never followed.
    func chownTree(_ path: String, uid: UInt32, gid: UInt32) throws(SystemError) {
        let fd = try openInRoot(path, root: root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, name: description + path)
        defer { closeDescriptor(fd.rawValue) }
        try Self.chownBeneath(fd, uid: uid, gid: gid, path: description + path, depth: 0)
    }

    static func chownBeneath(_ fd: FileDescriptor, uid: UInt32, gid: UInt32, path: String, depth: Int) throws(SystemError) {
        guard depth < 64 else { throw SystemError("chown", path: path, errno: .tooManySymbolicLinkLevels) }
        for entry in try directoryEntries(of: fd, path: path) {
            let entryPath = path + "/" + entry.name
            do { try setOwner(entry.name, uid: uid, gid: gid, in: fd) } catch { throw SystemError("chown", path: entryPath, errno: error.errno) }
            if entry.isDirectory {
                let child: FileDescriptor
                do { child = try openFile(entry.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, in: fd) } catch {
                    throw SystemError("open", path: entryPath, errno: error.errno)
                }
                defer { closeDescriptor(child.rawValue) }
                try chownBeneath(child, uid: uid, gid: gid, path: entryPath, depth: depth + 1)
            }
        }
    }
}
