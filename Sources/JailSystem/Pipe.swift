import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A close-on-exec pipe: the channel between the processes of a jail (readiness, logs,
/// lifeline, boot output).
public struct Pipe {
    public let read: FileDescriptor
    public let write: FileDescriptor

    public static func make() throws(SystemError) -> Pipe {
        var ends: [Int32] = [0, 0]
        try syscall("pipe2") { cj_pipe(&ends) }
        return Pipe(read: FileDescriptor(rawValue: ends[0]), write: FileDescriptor(rawValue: ends[1]))
    }

    public func close() {
        read.closeQuietly()
        write.closeQuietly()
    }
}
