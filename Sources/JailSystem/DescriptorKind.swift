import CJail

#if canImport(Glibc)
import Glibc
#endif

/// What kind of object a descriptor refers to, as far as handing it to a jail is concerned.
/// Both sides classify: the client to choose pass, /dev/null or relay; the session helper to
/// refuse anything but a pipe or a unix socket, whatever the client claimed.
public enum DescriptorKind: Equatable, Sendable {
    /// An anonymous pipe (pipefs): nothing of a file system is reachable through it.
    case pipe
    /// A FIFO with a name in some file system: fchmod/fchown and /proc/self/fd reach that node.
    case namedFIFO
    /// A unix socket (sockfs), connected or not: ssh's socketpairs.
    case unixSocket
    /// A socket of another family (inet, netlink…).
    case otherSocket(domain: Int32)
    /// The character device 1:3, wherever its node lives.
    case null
    case terminal
    case directory
    case regularFile
    /// Any other character or block device.
    case device
    /// O_PATH: names a file, cannot be read or written.
    case pathOnly
    /// Not an open descriptor.
    case closed

    /// pipefs' f_type (linux/magic.h): the file system of pipe(2) pipes.
    static let pipeFileSystem = 0x5049_5045

    /// fstat, fstatfs and SO_DOMAIN of `fd`.
    public static func of(_ fd: Int32) -> DescriptorKind {
        let flags = fcntl(fd, F_GETFL)
        if flags < 0 { return .closed }
        if flags & CJ_O_PATH != 0 { return .pathOnly }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .closed }
        switch info.st_mode & S_IFMT {
        case S_IFIFO:
            return cj_filesystem_type(fd) == pipeFileSystem ? .pipe : .namedFIFO
        case S_IFSOCK:
            var domain: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 else { return .otherSocket(domain: -1) }
            return domain == AF_UNIX ? .unixSocket : .otherSocket(domain: domain)
        case S_IFCHR:
            if cj_device_major(info.st_rdev) == 1 && cj_device_minor(info.st_rdev) == 3 { return .null }
            return isatty(fd) == 1 ? .terminal : .device
        case S_IFBLK: return .device
        case S_IFDIR: return .directory
        case S_IFREG: return .regularFile
        default: return .device
        }
    }

    /// Pipes and unix sockets are the only host objects a jail may hold: through them it can
    /// read and write bytes, and nothing else of the host (see docs/security.md).
    public var isPassable: Bool { self == .pipe || self == .unixSocket }

    public var description: String {
        switch self {
        case .pipe: "a pipe"
        case .namedFIFO: "a named FIFO"
        case .unixSocket: "a unix socket"
        case .otherSocket(let domain): domain == AF_INET || domain == AF_INET6 ? "an inet socket" : "a socket of family \(domain)"
        case .null: "a /dev/null device"
        case .terminal: "a terminal"
        case .directory: "a directory"
        case .regularFile: "a regular file"
        case .device: "a device"
        case .pathOnly: "an O_PATH descriptor"
        case .closed: "a closed descriptor"
        }
    }
}
