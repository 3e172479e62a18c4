import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One name of a directory listing with its type as the directory says it (readdir's d_type:
/// no stat per entry, so a name a jail swaps meanwhile is not followed).
public struct DirectoryEntry: Equatable, Sendable {
    public let name: String
    /// DT_REG, DT_DIR, DT_LNK…; DT_UNKNOWN where the file system does not say.
    public let type: UInt8

    public var isRegularFile: Bool { type == UInt8(DT_REG) }
    public var isDirectory: Bool { type == UInt8(DT_DIR) }
}

/// The entries of the open directory `directory` (without "." and ".."), at most `limit`;
/// `path` is what the errors show. The caller keeps its descriptor: the listing reads through
/// a descriptor of its own (fdopendir takes over the one it is given).
public func directoryEntries(of directory: FileDescriptor, path: String, limit: Int = .max) throws(SystemError) -> [DirectoryEntry] {
    let own = try syscall("open", path: path) { openat(directory.rawValue, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    guard let stream = fdopendir(own) else {
        let error = SystemError.last("opendir", path: path)
        closeDescriptor(own)
        throw error
    }
    defer { closedir(stream) }
    var entries: [DirectoryEntry] = []
    while entries.count < limit {
        errno = 0
        guard let entry = readdir(stream) else {
            if errno != 0 { throw SystemError.last("readdir", path: path) }
            break
        }
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { entries.append(DirectoryEntry(name: name, type: entry.pointee.d_type)) }
    }
    return entries
}
