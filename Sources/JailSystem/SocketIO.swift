import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Non-blocking socket traffic for the relays (service and syslog): one copy of the EINTR and
// EAGAIN rules, and never a SIGPIPE (MSG_NOSIGNAL) from a peer that went away.

extension FileDescriptor {
    /// send(2) of what fits now: the count sent, 0 when the socket would block. A peer that is
    /// gone is EPIPE or ECONNRESET; a datagram too large for the receiver EMSGSIZE.
    public func sendSome(_ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Int {
        while true {
            let n = Glibc.send(rawValue, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            if n >= 0 { return n }
            switch Glibc.errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return 0
            default: throw SystemError.last("send")
            }
        }
    }

    /// recv(2) of what is there now into `buffer`: the count (0: the peer's end of stream), nil
    /// when nothing is waiting. With `datagramLength` (MSG_TRUNC) the count is the datagram's
    /// whole length, which may exceed what `buffer` took.
    public func receiveSome(into buffer: UnsafeMutableRawBufferPointer, datagramLength: Bool = false) throws(SystemError) -> Int? {
        let flags = Int32(MSG_DONTWAIT) | (datagramLength ? Int32(MSG_TRUNC) : 0)
        while true {
            let n = Glibc.recv(rawValue, buffer.baseAddress, buffer.count, flags)
            if n >= 0 { return n }
            switch Glibc.errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return nil
            default: throw SystemError.last("recv")
            }
        }
    }

    /// shutdown(2) of the sending direction: the peer reads its end of stream, and can still send.
    public func shutdownWrite() throws(SystemError) {
        try syscall("shutdown") { Glibc.shutdown(rawValue, Int32(SHUT_WR)) }
    }
}

extension UnixSocket {
    /// A non-blocking stream connection to `path` (CLOEXEC), or nil when the listener's backlog
    /// is full (EAGAIN: a unix connect does not wait for room; try again later).
    public static func connectNonBlocking(path: String) throws(SystemError) -> FileDescriptor? {
        let fd = try syscall("socket", path: path) {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8.prefix(107))
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (offset, byte) in bytes.enumerated() { raw[offset] = byte }
        }
        while true {
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if rc == 0 { return FileDescriptor(rawValue: fd) }
            let error = Glibc.errno
            if error == EINTR { continue }
            Glibc.close(fd)
            if error == EAGAIN { return nil }
            throw SystemError("connect", path: path, errno: Errno(rawValue: error))
        }
    }

    /// A datagram socket bound at `path` (CLOEXEC), such as a jail's /dev/log.
    public static func bindDatagram(path: String) throws(SystemError) -> FileDescriptor {
        FileDescriptor(rawValue: try syscall("bind", path: path) { cj_unix_dgram_bind(path) })
    }
}
