import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's log when it runs as a daemon on a host where nobody listens on /dev/log
/// (no syslog daemon, no journald): glibc's syslog(3) would drop every line without a word,
/// so the lines go to `/var/log/jail/NAME.log` instead, rotated by size (NAME.log.1 … .3).
/// A class because the sink holds it and each write moves its size; jaild is single-threaded.
public final class LogFile: @unchecked Sendable {
    public static let directory = "/var/log/jail"
    public static let maxBytes = 10 << 20
    public static let keptFiles = 3

    public let directory: String
    public let path: String
    let maxBytes: Int
    private var fd: Int32 = -1
    private var size = 0

    public init(name: String, directory: String = LogFile.directory, maxBytes: Int = LogFile.maxBytes) {
        self.directory = directory
        self.maxBytes = maxBytes
        path = "\(directory)/\(name).log"
    }

    /// Whether a syslog daemon takes datagrams on /dev/log now.
    public static func syslogIsReachable(_ path: String = "/dev/log") -> Bool {
        guard let socket = try? UnixSocket.connectDatagram(path: path) else { return false }
        socket.closeQuietly()
        return true
    }

    /// Whether `open` made the file (the first start of this jail without syslog).
    public private(set) var created = false

    /// Opens (creating the directory, root's, 0750) the file for appending.
    public func open() throws(SystemError) {
        created = access(path, F_OK) != 0
        // Parents too (a rootless user's ~/.local/state may not exist yet), private to the owner.
        var partial = ""
        for component in directory.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, partial == directory ? 0o750 : 0o700) < 0 && errno != EEXIST { throw .last("mkdir", path: partial) }
        }
        fd = try syscall("open", path: path) {
            Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        }
        var info = stat()
        size = fstat(fd, &info) == 0 ? Int(info.st_size) : 0
    }

    /// One line, with the time and level in front (syslog would have added them).
    func write(level: String, _ text: String) {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var stamp = [UInt8](repeating: 0, count: 32)
        let length = stamp.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                strftime($0, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
            }
        }
        let line = Array((String(decoding: stamp.prefix(length), as: UTF8.self) + " jaild[\(getpid())]: " + level + text + "\n").utf8)
        if size + line.count > maxBytes { rotate() }
        guard fd >= 0 else { return }
        let n = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if n > 0 { size += n }
    }

    /// NAME.log → NAME.log.1 → … → NAME.log.3 (the oldest goes), then a new NAME.log.
    func rotate() {
        if fd >= 0 { close(fd) }
        fd = -1
        unlink("\(path).\(Self.keptFiles)")
        for index in stride(from: Self.keptFiles - 1, through: 1, by: -1) {
            rename("\(path).\(index)", "\(path).\(index + 1)")
        }
        rename(path, "\(path).1")
        try? open()
    }
}
