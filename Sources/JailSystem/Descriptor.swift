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
