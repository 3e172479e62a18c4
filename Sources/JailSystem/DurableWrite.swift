import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `writeFile(.atomic)` whose new file is on disk (fsync) before it is renamed over `path`:
/// for a host file such as /etc/shells, which a crash must leave old or new, never empty.
/// A failure leaves no temporary behind.
public func writeFileDurably(_ path: String, _ bytes: [UInt8], mode: mode_t, temporary: String) throws(SystemError) {
    do {
        try writeFile(temporary, bytes, mode: mode, .replace)
        try syncFile(temporary)
        try renameFile(temporary, to: path)
    } catch {
        discardFile(temporary)
        throw error
    }
}

/// `path` replaced whole by `bytes` as shadow's commonio_close replaces an account file: a new
/// file beside it (`temporary`, usually `FILE+`) with the old one's mode and owner (`mode`
/// root:root when there is none), synced, then renamed over it, so a reader or a crash sees
/// the old text or the new, never half. A temporary left by a crash is replaced.
public func replaceFileKeepingOwner(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644, temporary: String) throws(SystemError) {
    let info = try fileStatus(path)
    try removeFile(temporary)
    guard try writeFile(temporary, bytes, mode: info.map { $0.st_mode & 0o7777 } ?? mode,
                        owner: (info?.st_uid ?? 0, info?.st_gid ?? 0), .exclusive) else {
        throw SystemError("open", path: temporary, errno: .fileExists)  // made by another since
    }
    do {
        try syncFile(temporary)
        try renameFile(temporary, to: path)
    } catch {
        discardFile(temporary)
        throw error
    }
}

/// `bytes` added at the end of `path`, which held `expectedSize` bytes when the caller read it
/// (under a lock that every writer takes): one write(2) with O_APPEND, synced. A short write is
/// cut off again, so no partial line stays, and thrown (ENOSPC). False, with nothing written,
/// when the file is not there, is not a regular file, or has another size than the caller read
/// (written without the lock): the caller rewrites it whole instead.
public func appendDurably(_ path: String, _ bytes: [UInt8], expectedSize: Int) throws(SystemError) -> Bool {
    let fd: FileDescriptor
    do { fd = try openFile(path, O_WRONLY | O_APPEND | O_NOFOLLOW) } catch {
        guard error.errno == .noSuchFileOrDirectory || error.errno == .tooManySymbolicLinkLevels else { throw error }
        return false
    }
    defer { closeDescriptor(fd.rawValue) }
    let before = try fd.fileStatus()
    guard before.st_mode & S_IFMT == S_IFREG, before.st_size == expectedSize else { return false }
    let written: Int
    do { written = try fd.writeSome(bytes[...]) } catch { throw SystemError("write", path: path, errno: error.errno) }
    if written != bytes.count {
        // A full disk or quota: the part written goes again (a failure of that is what is
        // thrown: the file may end in part of the line), and the caller fails.
        try fd.setSize(Int64(before.st_size), path: path)
        throw SystemError("write", path: path, errno: .noSpace)
    }
    try fd.synchronize(path: path)
    return true
}
