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
    let descriptor: Int32
    private(set) var entries: [String] = []

    init(kind: String) throws(SystemError) {
        var template = Array("/tmp/jail-\(kind)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw SystemError.last("mkdtemp", path: "/tmp/jail-\(kind)-XXXXXX") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        name = String(path.dropFirst(5))
        let path = self.path
        descriptor = try syscall("open", path: path) { open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o7777 == 0o700 else {
            close(descriptor)
            throw SystemError("fstat (not a fresh 0700 directory)", path: path, errno: .permissionDenied)
        }
    }

    /// A new file inside, the user's, mode 0600 (O_EXCL: never an existing one).
    mutating func createFile(_ entry: String, contents: [UInt8], owner: Account) throws(SystemError) {
        let fd = try syscall("openat", path: path + "/" + entry) {
            openat(descriptor, entry, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        }
        defer { close(fd) }
        entries.append(entry)
        try syscall("fchown", path: path + "/" + entry) { fchown(fd, owner.uid, owner.gid) }
        try FileDescriptor(rawValue: fd).writeFully(contents)
    }

    /// A listening unix socket inside, the user's, mode 0600. Bound by path: the directory is
    /// still root's and 0700, and /tmp's sticky bit keeps anyone else from renaming it, so
    /// the path cannot lead anywhere else.
    mutating func listen(_ entry: String, owner: Account) throws(SystemError) -> FileDescriptor {
        let socket = try UnixSocket.listen(path: path + "/" + entry, backlog: 16)
        entries.append(entry)
        do {
            try syscall("fchownat", path: path + "/" + entry) {
                fchownat(descriptor, entry, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW)
            }
            try syscall("fchmodat", path: path + "/" + entry) { fchmodat(descriptor, entry, 0o600, 0) }
        } catch {
            socket.closeQuietly()
            throw error
        }
        return socket
    }

    /// Gives the directory to the user, once everything inside is in place.
    func handOver(to owner: Account) throws(SystemError) {
        try syscall("fchown", path: path) { fchown(descriptor, owner.uid, owner.gid) }
    }

    /// Removes what was made here and the directory, if the user left nothing else in it.
    func remove() {
        for entry in entries { unlinkat(descriptor, entry, 0) }
        close(descriptor)
        let parent = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if parent >= 0 {
            unlinkat(parent, name, AT_REMOVEDIR)
            close(parent)
        }
    }
}
