import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Small helpers on file descriptors that swift-system does not have.
extension FileDescriptor {
    /// Reads up to `count` bytes; an empty array is end of file. EAGAIN gives nil.
    /// The buffer is not cleared first: only what read(2) wrote is ever part of the array.
    public func readChunk(max count: Int) throws(SystemError) -> [UInt8]? {
        var error: Int32 = 0
        let buffer = [UInt8](unsafeUninitializedCapacity: count) { data, initialized in
            let n = Glibc.read(rawValue, data.baseAddress, count)
            if n < 0 { error = Glibc.errno }
            initialized = max(n, 0)
        }
        if error == EAGAIN || error == EINTR { return nil }
        if error != 0 { throw SystemError("read", errno: Errno(rawValue: error)) }
        return buffer
    }

    /// Writes what it can without blocking forever on EINTR; returns the count written,
    /// 0 when the descriptor would block.
    public func writeSome(_ bytes: ArraySlice<UInt8>) throws(SystemError) -> Int {
        while true {
            let n = bytes.withUnsafeBytes { Glibc.write(rawValue, $0.baseAddress, $0.count) }
            if n >= 0 { return n }
            let error = Glibc.errno
            if error == EINTR { continue }
            if error == EAGAIN { return 0 }
            throw SystemError("write", errno: Errno(rawValue: error))
        }
    }

    /// Writes every byte, waiting for a non-blocking descriptor to drain.
    public func writeFully(_ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let n = try writeSome(bytes[offset...])
            if n == 0 { try waitWritable() } else { offset += n }
        }
    }

    public func waitWritable() throws(SystemError) {
        var entry = pollfd(fd: rawValue, events: Int16(POLLOUT), revents: 0)
        try syscall("poll") { Glibc.poll(&entry, 1, -1) }
    }

    public func setNonBlocking(_ on: Bool) throws(SystemError) {
        try syscall("fcntl(O_NONBLOCK)") { cj_set_nonblocking(rawValue, on ? 1 : 0) }
    }

    public func closeQuietly() {
        _ = Glibc.close(rawValue)
    }

    public var isTerminal: Bool { isatty(rawValue) == 1 }
}

/// Reads a whole (small) file, such as /etc/passwd.
public func readFile(_ path: String, limit: Int = 16 << 20) throws(SystemError) -> [UInt8] {
    let fd = try syscall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC) }
    defer { _ = close(fd) }
    var result: [UInt8] = []
    while result.count < limit {
        guard let chunk = try FileDescriptor(rawValue: fd).readChunk(max: 65536) else { continue }
        if chunk.isEmpty { break }
        result += chunk
    }
    return result
}

/// The number of threads of this process. clone/unshare/fork-without-exec are only safe when
/// it is 1 (see DESIGN.md), so callers check it first.
public func threadCount() -> Int {
    guard let status = try? readFile("/proc/self/status") else { return -1 }
    for line in String(decoding: status, as: UTF8.self).split(separator: "\n")
    where line.hasPrefix("Threads:") {
        return Int(line.dropFirst("Threads:".count).trimmingWhitespace()) ?? -1
    }
    return -1
}

/// A file that holds one integer, such as /proc/sys/user/max_user_namespaces; nil if it
/// cannot be read or is not a number.
public func readNumber(_ path: String) -> Int? {
    guard let bytes = try? readFile(path) else { return nil }
    return Int(String(decoding: bytes, as: UTF8.self)[...].trimmingWhitespace())
}

extension Substring {
    public func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\n" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\n" { s = s.dropLast() }
        return s
    }
}
