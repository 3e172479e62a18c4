import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// /proc/PID of one process, opened once: `jaild list`, `metrics` and `sessions` read several
/// files of each jail's init and of its children, and each is opened relative to this
/// descriptor, so /proc and the pid are looked up once per process instead of once per file
/// (at 2,000 jails the path walks were a third of `list`'s time).
///
/// Every read answers nil when the process is gone (it exited meanwhile) or is not this
/// caller's to look at (`jaild list` by a user): answers here, not failures.
final class ProcessDirectory {
    let pid: Int32
    /// nil when /proc/PID could not be opened: every read then answers nil.
    private let descriptor: FileDescriptor?

    init(_ pid: Int32) {
        self.pid = pid
        do { descriptor = try openDirectoryPath("/proc/\(pid)") } catch { descriptor = nil }
    }

    deinit {
        descriptor.map { closeDescriptor($0.rawValue) }
    }

    var isOpen: Bool { descriptor != nil }

    /// A small file of the process (statm, cmdline, task/PID/children …), at most `limit`
    /// bytes (readProcFile).
    func read(_ name: String, limit: Int = 4096) -> [UInt8]? {
        guard let descriptor else { return nil }
        let fd: FileDescriptor
        do { fd = try openFile(name, O_RDONLY, in: descriptor) } catch { return nil }
        defer { closeDescriptor(fd.rawValue) }
        return readProcFile(fd, limit: limit)
    }

    /// stat(2) of `name` under /proc/PID, links followed (`exe`, `root/…`).
    func status(_ name: String) -> stat? {
        guard let descriptor else { return nil }
        var info = stat()
        return fstatat(descriptor.rawValue, name, &info, 0) == 0 ? info : nil
    }

    /// Like `status`, with the errno of a failure (nil: none, or the process is gone).
    func statusError(_ name: String) -> Errno? {
        guard let descriptor else { return nil }
        var info = stat()
        return fstatat(descriptor.rawValue, name, &info, 0) == 0 ? nil : Errno(rawValue: errno)
    }

    /// The pids of its children (task/PID/children of its main thread).
    var children: [Int32] {
        decimalFields(read("task/\(pid)/children", limit: 65536) ?? []).compactMap { Int32(exactly: $0) }
    }

    /// VmRSS, from statm's second field (the same count in pages; the kernel makes statm in a
    /// fraction of the time of status).
    var residentBytes: UInt64 { Self.residentBytes(statm: read("statm", limit: 256)) }

    static func residentBytes(statm: [UInt8]?) -> UInt64 {
        let fields = decimalFields(statm ?? [])
        guard fields.count > 1 else { return 0 }
        return fields[1] * UInt64(pageSize())
    }

    /// Its command line up to the first NUL: a jaild process's title (cj_set_proctitle);
    /// read once (the session count and the RSS sum both ask).
    private(set) lazy var title: String = String(decoding: (read("cmdline", limit: 256) ?? []).prefix { $0 != 0 }, as: UTF8.self)

    /// The memfd among its descriptors whose name starts with `prefix` (`/memfd:NAME …` as
    /// fd/N's link says), read whole (at most `limit` bytes); nil when it holds none or is
    /// gone. Throws when the record is there but cannot be read.
    func memfdRecord(prefix: String, limit: Int = 64 << 10) throws(SystemError) -> [UInt8]? {
        guard let descriptor else { return nil }
        let listing: FileDescriptor
        do { listing = try openFile("fd", O_RDONLY | O_DIRECTORY, in: descriptor) } catch { return nil }
        // The stream owns `listing` and closes it; readlinkat and openat go through it.
        guard let stream = fdopendir(listing.rawValue) else {
            closeDescriptor(listing.rawValue)
            return nil
        }
        defer { closedir(stream) }
        let fdDirectory = FileDescriptor(rawValue: dirfd(stream))
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.first != "." else { continue }
            // A descriptor closed since the listing has no link: the next one is looked at.
            guard let link = try? readSymlink(name, in: fdDirectory), link.hasPrefix(prefix) else { continue }
            let fd: FileDescriptor
            do { fd = try openFile(name, O_RDONLY, in: fdDirectory) } catch where error.errno == .noSuchFileOrDirectory {
                return nil  // the process exited meanwhile
            } catch {
                throw SystemError("open", path: "/proc/\(pid)/fd/\(name)", errno: error.errno)
            }
            defer { closeDescriptor(fd.rawValue) }
            do { return try readAll(fd, limit: limit) } catch {
                throw SystemError("read", path: "/proc/\(pid)/fd/\(name)", errno: error.errno)
            }
        }
        return nil
    }
}

/// A small /proc file, at most `limit` bytes; nil when it cannot be opened or read (the
/// process is gone, or not this caller's to look at).
func readProcFile(_ path: String, limit: Int) -> [UInt8]? {
    let fd: FileDescriptor
    do { fd = try openFile(path, O_RDONLY) } catch { return nil }
    defer { closeDescriptor(fd.rawValue) }
    return readProcFile(fd, limit: limit)
}

/// procfs makes a small file whole on the first read when the buffer holds it (seq_file
/// fills the buffer to the end of the file), so a short read is its end: one read(2), not a
/// second one for the end of file, for each of the thousands of files `jaild list` reads.
func readProcFile(_ fd: FileDescriptor, limit: Int) -> [UInt8]? {
    do {
        // EAGAIN/EINTR (nil): read to the end the ordinary way.
        return try fd.readChunk(max: limit) ?? readAll(fd, limit: limit)
    } catch {
        return nil
    }
}

/// An integer as Swift's `T(String)` reads it: plain digits on bytes (state files, cgroup
/// files), anything else (a sign, no digits, an overflow) through that initializer.
func parseInteger<T: FixedWidthInteger>(_ bytes: UnsafeBufferPointer<UInt8>) -> T? {
    guard !bytes.isEmpty, bytes.count < 19 else { return T(String(decoding: bytes, as: UTF8.self)) }
    var value: Int64 = 0
    for byte in bytes {
        guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return T(String(decoding: bytes, as: UTF8.self)) }
        value = value * 10 + Int64(byte - UInt8(ascii: "0"))
    }
    return T(exactly: value)
}

/// The titles (cj_set_proctitle) of init's children that are no session, which `jaild list`
/// knows them by (Sessions.notSessionTitles).
enum ProcessTitle {
    static let spare = "jaild: spare"
    static let syslogRelay = "jaild: syslog relay"
    static let payload = "jaild: payload"
    static let payloadBoot = "jaild: payload boot"

    /// Titles of processes that fork nothing while they bear them: the spare forks its
    /// program only once it is a session (`jaild: session`), the syslog relay never.
    static let childless: Set<String> = [spare, syslogRelay]
}
