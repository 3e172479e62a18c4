import JailSystem
import SystemPackage

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
    private var file: FileDescriptor?
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
        created = !somethingExists(at: path)
        // Parents too (a rootless user's ~/.local/state may not exist yet), private to the owner.
        // Only when missing: a start walks no path it finds made (one lstat instead of a mkdir
        // and a stat per component).
        if !somethingExists(at: directory) {
            var partial = ""
            for component in directory.split(separator: "/") {
                partial += "/" + String(component)
                try ensureDirectory(partial, mode: partial == directory ? 0o750 : 0o700)
            }
        }
        let opened = try openFile(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, mode: 0o640)
        file = opened
        // Unknown, it counts from 0: the file grows one rotation's worth past the bound at most.
        size = (try? opened.fileStatus()).map { Int($0.st_size) } ?? 0
    }

    /// One line, with the time and level in front (syslog would have added them).
    func append(level: String, _ text: String) {
        let stamp = utcTimestamp() + " jaild[\(getpid())]: "
        var line = Array((stamp + level + text + "\n").utf8)
        if size + line.count > maxBytes, let failure = rotate() {
            // This file is the log: where a failed rotation is said (the next line tries again).
            line = Array((stamp + "warning: cannot rotate \(path): \(failure)\n").utf8) + line
        }
        guard let file else { return }
        // A line that cannot be written has nowhere else to go: this sink is the last resort.
        if let n = try? file.writeSome(line[...]) { size += n }
    }

    /// NAME.log → NAME.log.1 → … → NAME.log.3 (the oldest goes), then a new NAME.log.
    /// The first failure, if any (then the lines go on to NAME.log as it is).
    func rotate() -> SystemError? {
        file?.closeQuietly()
        file = nil
        var failure: SystemError?
        do {
            try removeFile("\(path).\(Self.keptFiles)")
            for index in stride(from: Self.keptFiles - 1, through: 1, by: -1) where somethingExists(at: "\(path).\(index)") {
                try renameFile("\(path).\(index)", to: "\(path).\(index + 1)")
            }
            try renameFile(path, to: "\(path).1")
        } catch { failure = error }
        do { try open() } catch { failure = failure ?? error }
        if failure != nil { size = 0 }  // not to try again at every line: once per maxBytes written
        return failure
    }
}
