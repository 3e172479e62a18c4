import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Whole-file reads, small writes, directory listings and the text trims that go with them:
// one copy each, for every process of Jail.

/// Reads a whole (small) file, such as /etc/passwd, up to `limit` bytes.
public func readFile(_ path: String, limit: Int = 16 << 20) throws(SystemError) -> [UInt8] {
    let fd = try syscall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC) }
    defer { _ = close(fd) }
    // A failed read names the file, as the open does.
    do { return try readAll(FileDescriptor(rawValue: fd), limit: limit) } catch {
        throw SystemError(error.operation, path: error.path ?? path, errno: error.errno)
    }
}

/// Reads a descriptor to its end (or `limit` bytes); EAGAIN and EINTR are retried.
public func readAll(_ descriptor: FileDescriptor, limit: Int = 16 << 20) throws(SystemError) -> [UInt8] {
    var result: [UInt8] = []
    while result.count < limit {
        guard let chunk = try descriptor.readChunk(max: min(65536, limit - result.count)) else { continue }
        if chunk.isEmpty { break }
        result += chunk
    }
    return result
}

/// A whole file as text (invalid UTF-8 repaired), such as a /proc file.
public func readText(_ path: String) throws(SystemError) -> String {
    String(decoding: try readFile(path), as: UTF8.self)
}

/// Writes one short value to a kernel file of /proc or /sys in a single write(2), as those
/// files require (uid_map, setgroups, oom_score_adj, cgroup.procs, memory.max).
public func writeKernelFile(_ path: String, _ text: String) throws(SystemError) {
    let fd = try syscall("open", path: path) { open(path, O_WRONLY | O_CLOEXEC) }
    defer { _ = close(fd) }
    let bytes = Array(text.utf8)
    let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    if n < 0 { throw SystemError.last("write", path: path) }
}

/// Creates `path` with `text` only if it does not exist yet (O_EXCL, so of two processes
/// claiming one name only one wins): false when it existed. A file whose write failed is
/// removed again.
public func createExclusively(_ path: String, _ text: String, mode: mode_t = 0o644) throws(SystemError) -> Bool {
    try writeFile(path, text: text, mode: mode, .exclusive)
}

/// The names in a directory, without "." and ".."; empty if it cannot be read.
public func listDirectory(_ path: String) -> [String] {
    guard let directory = opendir(path) else { return [] }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// The number of threads of this process. clone/unshare/fork-without-exec are only safe when
/// it is 1 (see DESIGN.md), so callers check it first.
/// -1 when /proc/self/status has no such line.
public func threadCount() throws(SystemError) -> Int {
    let status = try readFile("/proc/self/status")
    let label = Array("\nThreads:".utf8)
    guard let start = status.indices.first(where: { status[$0...].starts(with: label) }) else { return -1 }
    return number(in: status[(start + label.count)...].prefix { $0 != UInt8(ascii: "\n") }) ?? -1
}

/// A file that holds one integer, such as /proc/sys/user/max_user_namespaces; nil if it
/// cannot be read or is not a number (for files that may be absent; `readIntegerFile` where
/// an unreadable one must be said).
public func readNumber(_ path: String) -> Int? {
    guard let bytes = try? readFile(path) else { return nil }
    return number(in: bytes[...])
}

/// The integer a file holds; nil when it holds something else. A file that cannot be read is
/// the read's error.
public func readIntegerFile(_ path: String) throws(SystemError) -> Int? {
    number(in: try readFile(path)[...])
}

/// The decimal integer these bytes hold between blanks (space, tab, newline); nil if they
/// hold anything else. On bytes: the Character-wise trim cost a start a tenth of a millisecond
/// over the dozen /proc files it reads (issue 36).
func number(in bytes: ArraySlice<UInt8>) -> Int? {
    let blank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\n") }
    guard let first = bytes.firstIndex(where: { !blank($0) }), let last = bytes.lastIndex(where: { !blank($0) }) else { return nil }
    return Int(String(decoding: bytes[first...last], as: UTF8.self))
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs, carriage returns and newlines.
    public func trimmingWhitespace() -> SubSequence {
        let isSpace = { (c: Character) in c == " " || c == "\t" || c == "\n" || c == "\r" }
        var s = self[...]
        while let c = s.first, isSpace(c) { s = s.dropFirst() }
        while let c = s.last, isSpace(c) { s = s.dropLast() }
        return s
    }
}

/// Why a file of a jail's tree was not read: the jail controls that tree, so the reader
/// refuses rather than waits or follows.
public enum UntrustedFileError: Error, Equatable, CustomStringConvertible {
    case system(SystemError)
    /// A FIFO, socket, device, directory or symlink where a regular file was expected.
    case notRegularFile(String, kind: String)
    case tooLarge(String, limit: Int)
    case tooSlow(String, milliseconds: Int64)

    /// The file (or a directory on its path) does not exist.
    public var isMissing: Bool {
        if case .system(let error) = self { return error.errno == .noSuchFileOrDirectory }
        return false
    }

    /// The same failure as a SystemError, for callers that carry those: a non-regular file is
    /// EISDIR, ELOOP (a symlink, as O_NOFOLLOW says it) or EINVAL; too large EFBIG; too slow ETIMEDOUT.
    public var systemError: SystemError {
        switch self {
        case .system(let error): error
        case .notRegularFile(let path, let kind):
            SystemError("open", path: path, errno: kind == "a directory" ? .isDirectory
                : kind == "a symlink" ? .tooManySymbolicLinkLevels : .invalidArgument)
        case .tooLarge(let path, _): SystemError("read", path: path, errno: .fileTooLarge)
        case .tooSlow(let path, _): SystemError("read", path: path, errno: .timedOut)
        }
    }

    public var description: String {
        switch self {
        case .system(let error): "\(error)"
        case .notRegularFile(let path, let kind): "\(path) is \(kind), not a regular file"
        case .tooLarge(let path, let limit): "\(path) is larger than \(limit) bytes"
        case .tooSlow(let path, let milliseconds): "\(path) could not be read within \(milliseconds) ms"
        }
    }
}

/// Reads a regular file of a tree a jail controls (its /etc/passwd, /etc/group, a skeleton
/// file), as host root, so that nothing the jail puts at the path can hang or mislead the
/// reader: `path` is resolved inside `root` (RESOLVE_IN_ROOT: a symlink on the way stays in
/// the tree) and its last component is not followed; it is first opened O_PATH, which opens
/// nothing (a FIFO would block a reading open until a writer comes; a device's driver would
/// run its open), and must be a regular file by fstat; only then is that same inode opened for
/// reading, through /proc/self/fd, non-blocking. Its size is bounded by `limit`, and the reads
/// by `timeout` milliseconds (a regular file on a local file system never makes read(2) wait
/// long; a remote or FUSE one could, and is given up on between reads). `name` is the path
/// the errors show (the host's view of it, e.g. /srv/jails/a/etc/passwd).
public func readUntrustedFile(_ path: String, inRoot root: Int32, name: String, limit: Int = 16 << 20,
                              timeout: Int64 = 1000) throws(UntrustedFileError) -> [UInt8] {
    let started = monotonicMilliseconds()
    let handle = cj_open_in_root(root, path, CJ_O_PATH | O_NOFOLLOW)
    if handle < 0 { throw .system(.last("open", path: name)) }
    defer { _ = close(handle) }
    var info = stat()
    if fstat(handle, &info) < 0 { throw .system(.last("fstat", path: name)) }
    if let kind = fileKindName(info.st_mode) { throw .notRegularFile(name, kind: kind) }
    if info.st_size > limit { throw .tooLarge(name, limit: limit) }
    let fd = open("/proc/self/fd/\(handle)", O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
    if fd < 0 { throw .system(.last("open", path: name)) }
    defer { _ = close(fd) }
    let descriptor = FileDescriptor(rawValue: fd)
    var bytes: [UInt8] = []
    while true {
        if monotonicMilliseconds() - started > timeout { throw .tooSlow(name, milliseconds: timeout) }
        let chunk: [UInt8]?
        do { chunk = try descriptor.readChunk(max: min(65536, limit + 1 - bytes.count)) } catch {
            throw .system(SystemError("read", path: name, errno: error.errno))
        }
        guard let chunk else { continue }  // EAGAIN (a lock on the file) or EINTR: until the deadline
        if chunk.isEmpty { return bytes }
        bytes += chunk
        if bytes.count > limit { throw .tooLarge(name, limit: limit) }
    }
}

/// "a FIFO", "a directory"…: what a file's type is called in an error; nil for a regular file.
public func fileKindName(_ mode: mode_t) -> String? {
    switch mode & S_IFMT {
    case S_IFREG: nil
    case S_IFDIR: "a directory"
    case S_IFLNK: "a symlink"
    case S_IFIFO: "a FIFO"
    case S_IFSOCK: "a socket"
    case S_IFCHR: "a character device"
    case S_IFBLK: "a block device"
    default: "a file of unknown type"
    }
}

/// The same, for a process inside the jail (after pivot_root, such as a session helper, host
/// root itself with --no-userns): `path` in its own root.
public func readUntrustedFile(_ path: String, limit: Int = 16 << 20, timeout: Int64 = 1000) throws(UntrustedFileError) -> [UInt8] {
    let root = open("/", CJ_O_PATH | O_DIRECTORY | O_CLOEXEC)
    if root < 0 { throw .system(.last("open", path: "/")) }
    defer { _ = close(root) }
    return try readUntrustedFile(path, inRoot: root, name: path, limit: limit, timeout: timeout)
}

/// Makes `path` a directory with `mode` unless one is there already (the mkdir that many
/// starts race to). Something else of that name is an error, as is every other failure.
public func ensureDirectory(_ path: String, mode: mode_t) throws(SystemError) {
    if mkdir(path, mode) == 0 { return }
    let failure = Errno(rawValue: errno)
    var info = stat()
    // A symlink to a directory is one here too: the paths below it resolve through it.
    if failure == .fileExists, stat(path, &info) == 0, isDirectory(info) { return }
    throw SystemError("mkdir", path: path, errno: failure)
}

/// Replaces `path` by a file of `bytes` in one step: written to `temporary` (`path.new` unless
/// given) and renamed over it, so a reader sees the old file or the new one, never a part.
/// Every failure is reported (open, fchmod, write, close, rename) and leaves no temporary behind.
public func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t, temporary: String? = nil) throws(SystemError) {
    try writeFile(path, bytes, mode: mode, .atomic, temporary: temporary)
}
