import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// The path operations of every room: open, remove, rename, mode and owner, links, status.
// Each throws the SystemError naming the call and the path; the calls that a room makes while
// it undoes something after a failure already reported have their own names (`discard…`), so a
// dropped result is always a decision that can be read.

/// Opens `path` (relative to `directory` when given, as openat(2)); close-on-exec always.
public func openFile(_ path: String, _ flags: Int32, mode: mode_t = 0, in directory: FileDescriptor? = nil) throws(SystemError) -> FileDescriptor {
    let fd = try syscall("open", path: path) { openat(directory?.rawValue ?? AT_FDCWD, path, flags | O_CLOEXEC, mode) }
    return FileDescriptor(rawValue: fd)
}

/// An O_PATH descriptor of a directory, the anchor of the *at calls that must not follow a
/// path twice; `followSymlinks: false` refuses a symlink in the last component.
public func openDirectoryPath(_ path: String, in directory: FileDescriptor? = nil, followSymlinks: Bool = true) throws(SystemError) -> FileDescriptor {
    try openFile(path, CJ_O_PATH | O_DIRECTORY | (followSymlinks ? 0 : O_NOFOLLOW), in: directory)
}

/// Opens `path`, or nil when it does not exist.
public func openFileIfPresent(_ path: String, _ flags: Int32, mode: mode_t = 0, in directory: FileDescriptor? = nil) throws(SystemError) -> FileDescriptor? {
    do { return try openFile(path, flags, mode: mode, in: directory) } catch where error.errno == .noSuchFileOrDirectory { return nil }
}

/// Closes a raw descriptor. Linux frees the descriptor even when close(2) reports an error,
/// and for the descriptors this is used on (read ends, sockets, pidfds, O_PATH anchors) the
/// error says nothing about data: files written are closed with `closeAfterWriting`.
public func closeDescriptor(_ fd: Int32) {
    _ = Glibc.close(fd)
}

/// Closes a descriptor a file was written through: a write error can surface only here
/// (NFS, a full quota), so it is reported.
public func closeAfterWriting(_ descriptor: FileDescriptor, path: String) throws(SystemError) {
    if Glibc.close(descriptor.rawValue) < 0 { throw SystemError.last("close", path: path) }
}

/// Removes a file (unlink(2)): true when it was there, false when it was not.
@discardableResult
public func removeFile(_ path: String, in directory: FileDescriptor? = nil) throws(SystemError) -> Bool {
    if unlinkat(directory?.rawValue ?? AT_FDCWD, path, 0) == 0 { return true }
    if Glibc.errno == ENOENT { return false }
    throw SystemError.last("unlink", path: path)
}

/// Removes an empty directory (rmdir(2)): true when it was there, false when it was not.
@discardableResult
public func removeDirectory(_ path: String, in directory: FileDescriptor? = nil) throws(SystemError) -> Bool {
    if unlinkat(directory?.rawValue ?? AT_FDCWD, path, AT_REMOVEDIR) == 0 { return true }
    if Glibc.errno == ENOENT { return false }
    throw SystemError.last("rmdir", path: path)
}

/// Removes what a step that has already failed left behind (a temporary, a half-made lock):
/// the failure reported is the step's, and a file that cannot be removed as well changes
/// nothing the caller can do.
public func discardFile(_ path: String, in directory: FileDescriptor? = nil) {
    _ = unlinkat(directory?.rawValue ?? AT_FDCWD, path, 0)
}

/// As `discardFile`, for a directory made by the failed step.
public func discardDirectory(_ path: String, in directory: FileDescriptor? = nil) {
    _ = unlinkat(directory?.rawValue ?? AT_FDCWD, path, AT_REMOVEDIR)
}

/// rename(2): `from` replaces `to` in one step.
public func renameFile(_ from: String, to: String, in directory: FileDescriptor? = nil) throws(SystemError) {
    let anchor = directory?.rawValue ?? AT_FDCWD
    try syscall("rename", path: to) { renameat(anchor, from, anchor, to) }
}

/// chmod(2) of a path (the mode exactly, no umask).
public func setMode(_ path: String, _ mode: mode_t) throws(SystemError) {
    try syscall("chmod", path: path) { chmod(path, mode) }
}

/// Owner of `path` itself, never of what a symlink there points to (lchown(2)).
public func setOwner(_ path: String, uid: UInt32, gid: UInt32, in directory: FileDescriptor? = nil) throws(SystemError) {
    try syscall("chown", path: path) { fchownat(directory?.rawValue ?? AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW) }
}

/// Whether something (a symlink too, even a dangling one) is at `path`; a path that cannot be
/// looked at (EACCES, ELOOP) counts as there, so a caller claiming the name does not overwrite it.
public func somethingExists(at path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0 || (Glibc.errno != ENOENT && Glibc.errno != ENOTDIR)
}

/// readlink(2): where the symlink at `path` points.
public func readSymlink(_ path: String, in directory: FileDescriptor? = nil) throws(SystemError) -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = try syscall("readlink", path: path) {
        buffer.withUnsafeMutableBufferPointer { readlinkat(directory?.rawValue ?? AT_FDCWD, path, $0.baseAddress!, Int(PATH_MAX)) }
    }
    return String(decoding: buffer[..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// realpath(3): `path` with every symlink, `.` and `..` resolved.
public func canonicalPath(_ path: String) throws(SystemError) -> String {
    guard let resolved = realpath(path, nil) else { throw SystemError.last("realpath", path: path) }
    defer { free(resolved) }
    return String(cString: resolved)
}

/// symlink(2): a symlink at `path` pointing to `target`.
public func makeSymlink(_ target: String, at path: String, in directory: FileDescriptor? = nil) throws(SystemError) {
    try syscall("symlink", path: path) { symlinkat(target, directory?.rawValue ?? AT_FDCWD, path) }
}

/// mkdir(2) that fails if anything is there; `ensureDirectory` accepts a directory already made.
public func makeDirectory(_ path: String, mode: mode_t, in directory: FileDescriptor? = nil) throws(SystemError) {
    try syscall("mkdir", path: path) { mkdirat(directory?.rawValue ?? AT_FDCWD, path, mode) }
}

/// How `writeFile` puts bytes at a path.
public enum WriteDisposition: Sendable {
    /// Truncate and write in place (a file no reader sees half-written, such as a record under a lock).
    case replace
    /// Only if nothing is there (O_EXCL, so of two processes claiming a name one wins).
    case exclusive
    /// To a temporary beside it, renamed over the path: a reader sees the old file or the new one.
    case atomic
}

/// Writes `bytes` to `path` with exactly `mode` (not what the umask leaves) and, when given,
/// `owner`; never through a symlink. Every step is checked (open, fchmod, fchown, write, close,
/// rename) and a failure leaves no partial or temporary file. False only for `.exclusive`
/// when something was there already.
@discardableResult
public func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t, owner: (uid: UInt32, gid: UInt32)? = nil,
                      _ disposition: WriteDisposition = .replace, temporary: String? = nil) throws(SystemError) -> Bool {
    let target = disposition == .atomic ? temporary ?? path + ".new" : path
    let flags = O_WRONLY | O_CREAT | O_NOFOLLOW | (disposition == .exclusive ? O_EXCL : O_TRUNC)
    let descriptor: FileDescriptor
    do { descriptor = try openFile(target, flags, mode: mode) } catch where disposition == .exclusive && error.errno == .fileExists { return false }
    var failure: SystemError?
    if fchmod(descriptor.rawValue, mode) < 0 { failure = .last("fchmod", path: target) }
    if failure == nil, let owner, fchown(descriptor.rawValue, owner.uid, owner.gid) < 0 { failure = .last("fchown", path: target) }
    if failure == nil {
        do { try descriptor.writeFully(bytes) } catch { failure = SystemError("write", path: target, errno: error.errno) }
    }
    do { try closeAfterWriting(descriptor, path: target) } catch { failure = failure ?? error }
    if failure == nil, disposition == .atomic {
        do { try renameFile(target, to: path) } catch { failure = error }
    }
    if let failure {
        if disposition != .replace { discardFile(target) }
        throw failure
    }
    return true
}

/// `writeFile` of text.
@discardableResult
public func writeFile(_ path: String, text: String, mode: mode_t, owner: (uid: UInt32, gid: UInt32)? = nil,
                      _ disposition: WriteDisposition = .replace, temporary: String? = nil) throws(SystemError) -> Bool {
    try writeFile(path, Array(text.utf8), mode: mode, owner: owner, disposition, temporary: temporary)
}

/// link(2): a second name `path` for the file at `existing` (atomic, also over NFS: how the
/// shadow tools take their lock files).
public func makeHardLink(_ existing: String, at path: String) throws(SystemError) {
    try syscall("link", path: path) { link(existing, path) }
}

/// fsync(2) (or fdatasync(2) with `dataOnly`) of the file at `path`: its bytes are on disk
/// before a rename publishes it or a lock counts on it.
public func syncFile(_ path: String, dataOnly: Bool = false) throws(SystemError) {
    let descriptor = try openFile(path, O_RDONLY | O_NOFOLLOW)
    defer { closeDescriptor(descriptor.rawValue) }
    try descriptor.synchronize(path: path, dataOnly: dataOnly)
}

/// Runs `body` with the file-creation mask set to `mask` (umask(2)), and puts the previous one
/// back: for a bind(2), which has no mode argument, so that a socket is never reachable before
/// its chmod. Single-threaded callers only (the mask is the process's).
public func withFileCreationMask<T, E: Error>(_ mask: mode_t, _ body: () throws(E) -> T) throws(E) -> T {
    let previous = umask(mask)
    defer { umask(previous) }
    return try body()
}

/// Runs `body` with `directory` as the working directory (fchdir(2)), then back at /: for
/// bind(2) of a socket by a name relative to a held directory (a sockaddr takes no directory
/// descriptor). Single-threaded callers only (the working directory is the process's).
public func withWorkingDirectory<T>(_ directory: FileDescriptor, _ body: () throws(SystemError) -> T) throws(SystemError) -> T {
    try syscall("fchdir") { fchdir(directory.rawValue) }
    defer { _ = chdir("/") }  // "/" always exists and is searchable by the caller: cannot fail
    return try body()
}
