import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// What a room sets on a file it holds open (rather than by path, which another could swap
// between the open and the change): owner, mode, size, and its data on disk.
extension FileDescriptor {
    /// fchown(2); `path` is what the error shows.
    public func setOwner(uid: UInt32, gid: UInt32, path: String) throws(SystemError) {
        try syscall("fchown", path: path) { fchown(rawValue, uid, gid) }
    }

    /// fchmod(2): exactly `mode`, whatever the umask.
    public func setMode(_ mode: mode_t, path: String) throws(SystemError) {
        try syscall("fchmod", path: path) { fchmod(rawValue, mode) }
    }

    /// ftruncate(2): the file's size becomes `size` (a sparse extension when it grows).
    public func setSize(_ size: Int64, path: String) throws(SystemError) {
        try syscall("ftruncate", path: path) { ftruncate(rawValue, off_t(size)) }
    }

    /// fsync(2): the file's data and size are on disk when it returns.
    public func synchronize(path: String) throws(SystemError) {
        try syscall("fsync", path: path) { fsync(rawValue) }
    }
}

/// `writeFile(.atomic)` whose new file is on disk (fsync) before it is renamed over `path`:
/// for a host file such as /etc/shells, which a crash must leave old or new, never empty.
/// A failure leaves no temporary behind.
public func writeFileDurably(_ path: String, _ bytes: [UInt8], mode: mode_t, temporary: String) throws(SystemError) {
    do {
        try writeFile(temporary, bytes, mode: mode, .replace)
        let written = try openFile(temporary, O_RDONLY | O_NOFOLLOW)
        defer { closeDescriptor(written.rawValue) }
        try written.synchronize(path: temporary)
        try renameFile(temporary, to: path)
    } catch {
        discardFile(temporary)
        throw error
    }
}

extension FileDescriptor {
    /// fcntl(F_GETFL): the access mode and status flags it was opened with (O_PATH, O_RDONLY…).
    public func statusFlags() throws(SystemError) -> Int32 {
        try syscall("fcntl(F_GETFL)") { fcntl(rawValue, F_GETFL) }
    }
}
