#if canImport(Glibc)
import Glibc
#endif

/// lstat(2) of a path, nil when it does not exist.
public func fileStatus(_ path: String) throws(SystemError) -> stat? {
    var info = stat()
    if lstat(path, &info) == 0 { return info }
    if errno == ENOENT || errno == ENOTDIR { return nil }
    throw SystemError.last("lstat", path: path)
}

public func isDirectory(_ info: stat) -> Bool { info.st_mode & S_IFMT == S_IFDIR }
public func isSymlink(_ info: stat) -> Bool { info.st_mode & S_IFMT == S_IFLNK }
public func isSocket(_ info: stat) -> Bool { info.st_mode & S_IFMT == S_IFSOCK }

/// Why a directory that holds a jail socket cannot be trusted, or nil when it can: it must be
/// a real directory (not a symlink), owned by one of `owners`, and not writable by others
/// unless sticky (then nobody else can replace what we put there). Its ancestors must be as
/// safe, as OpenSSH's StrictModes wants: whoever can rename one can swap the whole path.
public func untrustedDirectoryReason(_ path: String, owners: [UInt32]) throws(SystemError) -> String? {
    guard let info = try fileStatus(path) else { return "does not exist" }
    if isSymlink(info) { return "is a symlink" }
    if !isDirectory(info) { return "is not a directory" }
    if let reason = unsafeOwnership(info, owners: owners) { return reason }
    var ancestor = path
    while let slash = ancestor.lastIndex(of: "/"), ancestor != "/" {
        ancestor = slash == ancestor.startIndex ? "/" : String(ancestor[..<slash])
        guard let info = try fileStatus(ancestor) else { return "has a missing parent \(ancestor)" }
        // A symlink's own owner decides who can change it (only root's are accepted).
        if isSymlink(info) && info.st_uid != 0 { return "has a parent \(ancestor) that is a symlink of uid \(info.st_uid)" }
        if let reason = unsafeOwnership(info, owners: owners) { return "has a parent \(ancestor) that \(reason)" }
    }
    return nil
}

private func unsafeOwnership(_ info: stat, owners: [UInt32]) -> String? {
    if !owners.contains(info.st_uid) { return "is owned by uid \(info.st_uid)" }
    let writableByOthers = info.st_mode & (S_IWGRP | S_IWOTH) != 0
    if writableByOthers && info.st_mode & S_ISVTX == 0 { return "is writable by others" }
    return nil
}
