import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A session's own directory in the jail's /tmp (`/tmp/jail-KIND-XXXXXX`), for what the
/// helper forwards: the X11 cookie file, the agent socket. /tmp is shared by every user of
/// the jail, so nothing here goes by path: mkdtemp makes the directory (a fresh name, 0700,
/// owned by root: no one else can enter it yet), it is opened O_NOFOLLOW and checked with
/// fstat, everything inside is made through that descriptor, and only then is the directory
/// given to the user. Removed at the session's end the same way (unlinkat never follows).
struct PrivateDirectory {
    let path: String
    let name: String
    let descriptor: FileDescriptor
    private(set) var entries: [String] = []

    init(kind: String) throws(SystemError) {
        path = try makeTemporaryDirectory("/tmp/jail-\(kind)-XXXXXX")
        name = String(path.dropFirst(5))
        descriptor = try openFile(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        let info: stat
        do { info = try descriptor.fileStatus() } catch {
            descriptor.closeQuietly()
            throw SystemError("fstat", path: path, errno: error.errno)
        }
        guard info.st_uid == geteuid(), info.st_mode & 0o7777 == 0o700 else {
            descriptor.closeQuietly()
            throw SystemError("fstat (not a fresh 0700 directory)", path: path, errno: .permissionDenied)
        }
    }

    /// A new file inside, the user's, mode 0600 (O_EXCL: never an existing one).
    mutating func createFile(_ entry: String, contents: [UInt8], owner: Account) throws(SystemError) {
        let entryPath = path + "/" + entry
        let file: FileDescriptor
        do { file = try openFile(entry, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600, in: descriptor) } catch {
            throw SystemError("openat", path: entryPath, errno: error.errno)
        }
        entries.append(entry)
        do throws(SystemError) {
            try file.setOwner(uid: owner.uid, gid: owner.gid, path: entryPath)
            do { try file.writeFully(contents) } catch { throw SystemError("write", path: entryPath, errno: error.errno) }
        } catch {
            file.closeQuietly()
            throw error
        }
        try closeAfterWriting(file, path: entryPath)
    }

    /// A listening unix socket inside, the user's, mode 0600. Bound by path: the directory is
    /// still root's and 0700, and /tmp's sticky bit keeps anyone else from renaming it, so
    /// the path cannot lead anywhere else.
    mutating func listen(_ entry: String, owner: Account) throws(SystemError) -> FileDescriptor {
        let entryPath = path + "/" + entry
        let socket = try UnixSocket.listen(path: entryPath, backlog: 16)
        entries.append(entry)
        do throws(SystemError) {
            do { try setOwner(entry, uid: owner.uid, gid: owner.gid, in: descriptor) } catch {
                throw SystemError("fchownat", path: entryPath, errno: error.errno)
            }
            try setMode(entry, 0o600, in: descriptor, path: entryPath)
        } catch {
            socket.closeQuietly()
            throw error
        }
        return socket
    }

    /// Gives the directory to the user, once everything inside is in place.
    func handOver(to owner: Account) throws(SystemError) {
        try descriptor.setOwner(uid: owner.uid, gid: owner.gid, path: path)
    }

    /// Removes what was made here and the directory, if the user left nothing else in it.
    /// At the session's end, with nobody left to tell but the log: what stays is the user's
    /// to remove (it is theirs, in /tmp).
    func remove() {
        for entry in entries {
            do { try removeFile(entry, in: descriptor) } catch {
                log.warning("session: \(path)/\(entry) is left behind: \(error)")
            }
        }
        descriptor.closeQuietly()
        do { try removeDirectory(path) } catch where error.errno == .directoryNotEmpty {
            return  // the user's own files in it: theirs to remove
        } catch {
            log.warning("session: \(path) is left behind: \(error)")
        }
    }
}
