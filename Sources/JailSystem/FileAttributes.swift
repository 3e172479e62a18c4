import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Owner and mode of a file already open, or of an entry of a directory held open: the calls
// that must not go by a path someone else could swap between two steps (a pty's slave, a file
// made in a private directory of the shared /tmp).

extension FileDescriptor {
    /// fchown(2) of this file; `path` names it in the error.
    public func setOwner(uid: UInt32, gid: UInt32, path: String? = nil) throws(SystemError) {
        try syscall("fchown", path: path) { fchown(rawValue, uid, gid) }
    }

    /// fchmod(2) of this file (the mode exactly, no umask); `path` names it in the error.
    public func setMode(_ mode: mode_t, path: String? = nil) throws(SystemError) {
        try syscall("fchmod", path: path) { fchmod(rawValue, mode) }
    }
}

/// chmod of the entry `name` of `directory` (fchmodat(2)); `path` names it in the error.
public func setMode(_ name: String, _ mode: mode_t, in directory: FileDescriptor, path: String? = nil) throws(SystemError) {
    try syscall("chmod", path: path ?? name) { fchmodat(directory.rawValue, name, mode, 0) }
}

extension FileDescriptor {
    /// ftruncate(2): the file's size becomes `size` (a sparse extension when it grows).
    public func setSize(_ size: Int64, path: String) throws(SystemError) {
        try syscall("ftruncate", path: path) { ftruncate(rawValue, off_t(size)) }
    }

    /// fsync(2) (or fdatasync(2) with `dataOnly`): what was written through it is on disk.
    public func synchronize(path: String, dataOnly: Bool = false) throws(SystemError) {
        try syscall(dataOnly ? "fdatasync" : "fsync", path: path) { dataOnly ? fdatasync(rawValue) : fsync(rawValue) }
    }

    /// fcntl(F_GETFL): the access mode and status flags it was opened with (O_PATH, O_RDONLY…).
    public func statusFlags() throws(SystemError) -> Int32 {
        try syscall("fcntl(F_GETFL)") { fcntl(rawValue, F_GETFL) }
    }
}
