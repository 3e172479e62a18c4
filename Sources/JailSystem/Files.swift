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
    return try readAll(FileDescriptor(rawValue: fd), limit: limit)
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
public func threadCount() -> Int {
    guard let status = try? readText("/proc/self/status") else { return -1 }
    for line in status.split(separator: "\n") where line.hasPrefix("Threads:") {
        return Int(line.dropFirst("Threads:".count).trimmingWhitespace()) ?? -1
    }
    return -1
}

/// A file that holds one integer, such as /proc/sys/user/max_user_namespaces; nil if it
/// cannot be read or is not a number.
public func readNumber(_ path: String) -> Int? {
    guard let text = try? readText(path) else { return nil }
    return Int(text.trimmingWhitespace())
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
