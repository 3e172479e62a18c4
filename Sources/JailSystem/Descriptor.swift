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

}

extension FileDescriptor {
    /// dup2(2): this descriptor also becomes `target` (closing what `target` was).
    public func duplicate(onto target: Int32) throws(SystemError) {
        try syscall("dup2") { Glibc.dup2(rawValue, target) }
    }

    /// Whether this descriptor is a terminal (isatty(3)).
    public var isTerminal: Bool { isatty(rawValue) == 1 }
}

extension FileDescriptor {
    /// Replaces the whole contents of the file open here with `bytes`, in place (ftruncate,
    /// then pwrite at 0): for a file whose inode matters, such as a pid file under its flock.
    /// A short write is ENOSPC.
    public func replaceContents(_ bytes: [UInt8], path: String) throws(SystemError) {
        try syscall("ftruncate", path: path) { ftruncate(rawValue, 0) }
        let written = try syscall("write", path: path) { bytes.withUnsafeBytes { Glibc.pwrite(rawValue, $0.baseAddress, $0.count, 0) } }
        if written != bytes.count { throw SystemError("write", path: path, errno: .noSpace) }
    }
}
