import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What a socket holds right now, read without waiting (an acknowledgement byte, or its end).
public enum WaitingByte: Equatable, Sendable {
    case byte(UInt8)
    /// Nothing yet: the peer is still there.
    case nothing
    /// End of file, or the connection broke: the peer is gone.
    case ended
}

extension FileDescriptor {
    /// One byte of this socket if one is waiting: recv(2) with MSG_DONTWAIT, so whatever the
    /// descriptor's own mode, the caller never waits for a peer it does not trust.
    public func receiveWaitingByte() -> WaitingByte {
        var byte: UInt8 = 0
        while true {
            let n = recv(rawValue, &byte, 1, Int32(MSG_DONTWAIT))
            if n == 1 { return .byte(byte) }
            if n < 0 && Glibc.errno == EINTR { continue }
            if n < 0 && Glibc.errno == EAGAIN { return .nothing }
            return .ended
        }
    }
}
