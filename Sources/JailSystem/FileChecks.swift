import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// lstat(2) of a path (relative to `directory` when given): a symlink is itself; nil when nothing is there.
public func fileStatus(_ path: String, in directory: FileDescriptor? = nil) throws(SystemError) -> stat? {
    var info = stat()
    if fstatat(directory?.rawValue ?? AT_FDCWD, path, &info, AT_SYMLINK_NOFOLLOW) == 0 { return info }
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

/// Who besides root can pass one directory (search it, i.e. reach what is beneath): what the
/// private-root rule looks at, gathered by `directoryReach(along:)`.
public struct DirectoryReach: Equatable, Sendable {
    public var path: String
    public var uid: UInt32
    public var gid: UInt32
    public var mode: mode_t
    /// The named users and groups (and the owning group) that its POSIX ACL lets search it,
    /// as "user 1001" / "group 1001"; empty without an ACL.
    public var aclSearchers: [String] = []

    public init(path: String, uid: UInt32, gid: UInt32, mode: mode_t, aclSearchers: [String] = []) {
        self.path = path
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.aclSearchers = aclSearchers
    }

    /// Only root can pass it: root's, no search for group or others in its mode, none in its ACL.
    public var closedToAllButRoot: Bool { uid == 0 && mode & (S_IXGRP | S_IXOTH) == 0 && aclSearchers.isEmpty }
    public var searchableByOthers: Bool { mode & S_IXOTH != 0 }
}

/// Every directory from / down to `path` (symlinks resolved first: the real path is what
/// gets checked), with who can pass each.
public func directoryReach(along path: String) throws(SystemError) -> [DirectoryReach] {
    guard let resolved = realpath(path, nil) else { throw .last("realpath", path: path) }
    let real = String(cString: resolved)
    free(resolved)
    var chain: [DirectoryReach] = []
    var prefix = ""
    for component in [""] + real.split(separator: "/").map(String.init) {
        prefix = component.isEmpty ? "/" : (prefix == "/" ? "" : prefix) + "/" + component
        var info = stat()
        if lstat(prefix, &info) < 0 { throw .last("lstat", path: prefix) }
        guard isDirectory(info) else { continue }  // a bind-mounted file: only its directories count
        let acl = try accessACL(prefix)
        chain.append(DirectoryReach(path: prefix, uid: info.st_uid, gid: info.st_gid, mode: info.st_mode,
                                    aclSearchers: acl.map(aclSearchers) ?? []))
    }
    return chain
}

/// The raw system.posix_acl_access xattr of a path, nil when it has none (or the file system
/// has no ACLs).
func accessACL(_ path: String) throws(SystemError) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = lgetxattr(path, "system.posix_acl_access", &buffer, buffer.count)
    if n >= 0 { return Array(buffer[..<n]) }
    if errno == ENODATA || errno == EOPNOTSUPP { return nil }
    throw .last("getxattr(system.posix_acl_access)", path: path)
}

/// Who an ACL (the kernel's xattr form: a version-2 header, then entries of tag u16, perm
/// u16, id u32, little-endian) lets search, besides the owner: the owning group and named
/// users and groups whose entry has x and whose x the mask keeps, and others. An ACL the
/// parser does not understand counts as open to everyone (refused, never trusted).
public func aclSearchers(_ xattr: [UInt8]) -> [String] {
    func u16(_ at: Int) -> UInt16 { UInt16(xattr[at]) | UInt16(xattr[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
    guard xattr.count >= 4, (xattr.count - 4) % 8 == 0, u32(0) == 2 else { return ["everyone (an unreadable ACL)"] }
    let (userObj, user, groupObj, group, mask, other): (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) =
        (0x01, 0x02, 0x04, 0x08, 0x10, 0x20)
    let entries = stride(from: 4, to: xattr.count, by: 8).map { (tag: u16($0), perm: u16($0 + 2), id: u32($0 + 4)) }
    let execute: UInt16 = 1
    let maskKeepsSearch = entries.first { $0.tag == mask }.map { $0.perm & execute != 0 } ?? true
    var searchers: [String] = []
    for entry in entries where entry.perm & execute != 0 {
        switch entry.tag {
        case userObj, mask: continue
        case user where maskKeepsSearch: searchers.append("user \(entry.id)")
        case group where maskKeepsSearch: searchers.append("group \(entry.id)")
        case groupObj where maskKeepsSearch: searchers.append("the owning group")
        case other: searchers.append("others")
        default: continue
        }
    }
    return searchers
}


/// stat(2): the status of what `path` leads to (a symlink followed), nil when nothing is
/// there (or a symlink dangles).
public func fileStatusFollowingLinks(_ path: String) throws(SystemError) -> stat? {
    var info = stat()
    if stat(path, &info) == 0 { return info }
    if errno == ENOENT || errno == ENOTDIR { return nil }
    throw SystemError.last("stat", path: path)
}
