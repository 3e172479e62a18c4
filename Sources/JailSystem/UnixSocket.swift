import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The credentials of the process at the other end of a unix socket (SO_PEERCRED).
public struct PeerCredentials: Equatable, Sendable {
    public let pid: Int32
    public let uid: UInt32
    public let gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

public enum UnixSocket {
    /// socket, bind and listen; CLOEXEC and non-blocking.
    public static func listen(path: String, backlog: Int32 = 128) throws(SystemError) -> FileDescriptor {
        FileDescriptor(rawValue: try syscall("bind", path: path) { cj_unix_listen(path, backlog) })
    }

    public static func connect(path: String) throws(SystemError) -> FileDescriptor {
        FileDescriptor(rawValue: try syscall("connect", path: path) { cj_unix_connect(path) })
    }

    /// A connected datagram socket (CLOEXEC), such as one to /dev/log.
    public static func connectDatagram(path: String) throws(SystemError) -> FileDescriptor {
        FileDescriptor(rawValue: try syscall("connect", path: path) { cj_unix_connect_type(path, Int32(SOCK_DGRAM.rawValue)) })
    }

    /// Accepts one connection (CLOEXEC, non-blocking), or nil when none is waiting.
    public static func accept(_ listener: FileDescriptor) throws(SystemError) -> FileDescriptor? {
        while true {
            let fd = cj_accept(listener.rawValue)
            if fd >= 0 { return FileDescriptor(rawValue: fd) }
            switch Glibc.errno {
            case EINTR: continue
            case EAGAIN, ECONNABORTED: return nil
            default: throw SystemError.last("accept")
            }
        }
    }

    /// A connected pair of SOCK_SEQPACKET sockets (CLOEXEC, blocking): each send arrives as one
    /// message with its descriptors, and closing one end is an end of file at the other.
    public static func pair() throws(SystemError) -> (FileDescriptor, FileDescriptor) {
        var ends: [Int32] = [-1, -1]
        try syscall("socketpair") { socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) }
        return (FileDescriptor(rawValue: ends[0]), FileDescriptor(rawValue: ends[1]))
    }

    public static func peerCredentials(_ socket: FileDescriptor) throws(SystemError) -> PeerCredentials {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
        try syscall("getsockopt(SO_PEERCRED)") { cj_peer_credentials(socket.rawValue, &pid, &uid, &gid) }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    /// Sends bytes with descriptors attached (SCM_RIGHTS). Returns the bytes sent.
    public static func send(
        _ socket: FileDescriptor, _ bytes: [UInt8], passing fds: [Int32]
    ) throws(SystemError) -> Int {
        try syscall("sendmsg") {
            bytes.withUnsafeBytes { data in
                fds.withUnsafeBufferPointer {
                    cj_send_with_fds(socket.rawValue, data.baseAddress, data.count, $0.baseAddress, Int32(fds.count))
                }
            }
        }
    }

    /// Receives bytes and any descriptors that came with them (made CLOEXEC).
    /// Returns nil when a non-blocking socket has nothing.
    public static func receive(
        _ socket: FileDescriptor, max count: Int, maxDescriptors: Int
    ) throws(SystemError) -> (bytes: [UInt8], fds: [Int32])? {
        var fds = [Int32](repeating: -1, count: max(maxDescriptors, 1))
        var received: Int32 = 0
        var error: Int32 = 0
        // Not cleared first: only what recvmsg wrote is ever part of the array.
        let buffer = [UInt8](unsafeUninitializedCapacity: count) { data, initialized in
            let n = fds.withUnsafeMutableBufferPointer {
                cj_recv_with_fds(socket.rawValue, data.baseAddress, count, $0.baseAddress, Int32(maxDescriptors), &received)
            }
            if n < 0 { error = Glibc.errno }
            initialized = max(n, 0)
        }
        if error == EAGAIN { return nil }
        if error != 0 { throw SystemError("recvmsg", errno: Errno(rawValue: error)) }
        return (buffer, Array(fds.prefix(Int(received))))
    }
}
