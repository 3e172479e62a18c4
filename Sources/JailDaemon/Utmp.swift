#if canImport(Glibc)
import Glibc
#endif

/// utmp/wtmp records inside the jail, so `who`, `w` and `last` there show the sessions.
///
/// Written by hand, not with glibc's pututline/updwtmp: those may take NSS-style locks and
/// look at the jail's own configuration from jaild's process. The layout is glibc's x86_64
/// (and aarch64) `struct utmp`, 384 bytes, which busybox, coreutils and util-linux read:
///
///     0 ut_type i16, 2 pad, 4 ut_pid i32, 8 ut_line[32], 40 ut_id[4], 44 ut_user[32],
///     76 ut_host[256], 332 ut_exit (2 × i16), 336 ut_session i32, 340 ut_tv (2 × i32),
///     348 ut_addr_v6[4] i32, 364 reserved[20]
///
/// Used by the session helper (login at start, logout at end) and by init, which writes the
/// logout of a helper that died without it (a crash or SIGKILL), by pid, so nothing stale
/// stays "logged in". ut_pid is the helper's pid: it is the login process of the session.
public enum Utmp {
    public static let recordSize = 384
    public static let runLevel: Int16 = 1
    public static let bootTime: Int16 = 2
    public static let userProcess: Int16 = 7
    public static let deadProcess: Int16 = 8
    public static let utmpPath = "/var/run/utmp"
    public static let wtmpPath = "/var/log/wtmp"
    /// init reads at most this many records when it cleans up (a bounded, fixed-size scan).
    static let maxRecords = 4096

    public struct Entry: Equatable, Sendable {
        public var type: Int16
        public var pid: Int32
        /// `pts/3`: the tty without `/dev/`.
        public var line: String
        public var id: String
        public var user: String
        public var host: String
        public var seconds: Int32
        public var microseconds: Int32

        public init(type: Int16, pid: Int32, line: String, id: String, user: String, host: String,
                    seconds: Int32, microseconds: Int32) {
            self.type = type
            self.pid = pid
            self.line = line
            self.id = id
            self.user = user
            self.host = host
            self.seconds = seconds
            self.microseconds = microseconds
        }

        /// A session's entry for the tty `/dev/pts/N` (line `pts/N`, id `N` as sshd does).
        public init(type: Int16, pid: Int32, tty: String, user: String, host: String, now: timespec) {
            let line = tty.hasPrefix("/dev/") ? String(tty.dropFirst(5)) : tty
            let id = line.hasPrefix("pts/") ? String(line.dropFirst(4)) : line
            self.init(type: type, pid: pid, line: line, id: String(id.suffix(4)), user: user, host: host,
                      seconds: Int32(truncatingIfNeeded: now.tv_sec), microseconds: Int32(now.tv_nsec / 1000))
        }

        public func encoded() -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: Utmp.recordSize)
            put(UInt32(UInt16(bitPattern: type)), size: 2, at: 0, &bytes)
            put(UInt32(bitPattern: pid), size: 4, at: 4, &bytes)
            putString(line, at: 8, size: 32, &bytes)
            putString(id, at: 40, size: 4, &bytes)
            putString(user, at: 44, size: 32, &bytes)
            putString(host, at: 76, size: 256, &bytes)
            put(UInt32(bitPattern: seconds), size: 4, at: 340, &bytes)
            put(UInt32(bitPattern: microseconds), size: 4, at: 344, &bytes)
            return bytes
        }

        /// The fields init and the tests need; nil when `bytes` is not one record.
        public static func decode(_ bytes: ArraySlice<UInt8>) -> Entry? {
            guard bytes.count == Utmp.recordSize else { return nil }
            let b = Array(bytes)
            func int(_ at: Int, _ size: Int) -> UInt32 {
                (0..<size).reduce(UInt32(0)) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
            }
            func string(_ at: Int, _ size: Int) -> String {
                String(decoding: b[at..<(at + size)].prefix { $0 != 0 }, as: UTF8.self)
            }
            return Entry(type: Int16(truncatingIfNeeded: int(0, 2)), pid: Int32(bitPattern: int(4, 4)), line: string(8, 32),
                         id: string(40, 4), user: string(44, 32), host: string(76, 256),
                         seconds: Int32(bitPattern: int(340, 4)), microseconds: Int32(bitPattern: int(344, 4)))
        }

        /// The logout that matches this login: same line, id and pid, no user or host.
        public func dead(now: timespec) -> Entry {
            Entry(type: Utmp.deadProcess, pid: pid, line: line, id: id, user: "", host: "",
                  seconds: Int32(truncatingIfNeeded: now.tv_sec), microseconds: Int32(now.tv_nsec / 1000))
        }
    }

    static func put(_ value: UInt32, size: Int, at offset: Int, _ bytes: inout [UInt8]) {
        for i in 0..<size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }

    /// NUL-padded, cut at `size` bytes (utmp strings need no terminator when full).
    static func putString(_ s: String, at offset: Int, size: Int, _ bytes: inout [UInt8]) {
        for (i, byte) in s.utf8.prefix(size).enumerated() { bytes[offset + i] = byte }
    }

    public static func now() -> timespec {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return t
    }

    /// sysvinit's two records of a boot, as its init writes them: BOOT_TIME ("reboot") and
    /// RUN_LVL ("runlevel", ut_pid = the level + 256 × the previous one, 'N' for none), both
    /// on line "~" with id "~~". `runlevel` reads the RUN_LVL record, and Debian's
    /// invoke-rc.d asks `runlevel` before it starts a service: without it, `apt-get install`
    /// and `service` start nothing ("could not determine current runlevel").
    public static func bootRecords(runlevel: Character, now: timespec) -> [Entry] {
        let seconds = Int32(truncatingIfNeeded: now.tv_sec)
        let microseconds = Int32(now.tv_nsec / 1000)
        let level = Int32(runlevel.asciiValue ?? UInt8(ascii: "2"))
        let previous = Int32(UInt8(ascii: "N"))
        return [
            Entry(type: bootTime, pid: 0, line: "~", id: "~~", user: "reboot", host: "", seconds: seconds, microseconds: microseconds),
            Entry(type: runLevel, pid: level + 256 * previous, line: "~", id: "~~", user: "runlevel", host: "",
                  seconds: seconds, microseconds: microseconds),
        ]
    }

    /// For init at start, on the jail's fresh /run: the boot's records into utmp (which is
    /// new, so they are its first two) and wtmp (`last reboot`). Returns false when utmp
    /// could not be written (no /run or /var/run in the jail, or not root's).
    @discardableResult
    public static func recordBoot(runlevel: Character, group: UInt32?) -> Bool {
        let records = bootRecords(runlevel: runlevel, now: now())
        guard let fd = openRecords(utmpPath, create: true, group: group) else { return false }
        defer { close(fd) }
        guard lock(fd) else { return false }
        for (index, entry) in records.enumerated() {
            let written = entry.encoded().withUnsafeBytes { pwrite(fd, $0.baseAddress, recordSize, off_t(index * recordSize)) }
            guard written == recordSize else { return false }
        }
        for entry in records { append(entry, to: wtmpPath, group: group) }
        return true
    }

    /// Session start: the USER_PROCESS entry into utmp (replacing the slot of its tty) and wtmp.
    public static func login(_ entry: Entry, group: UInt32?) {
        update(entry, group: group)
        append(entry, to: wtmpPath, group: group)
    }

    /// Session end: the matching DEAD_PROCESS into utmp and wtmp.
    public static func logout(_ entry: Entry, group: UInt32?) {
        let dead = entry.dead(now: now())
        update(dead, group: group)
        append(dead, to: wtmpPath, group: group)
    }

    /// For init: the helper `pid` ended without its logout; mark its utmp entries dead.
    /// Returns how many it found (they are logged out in wtmp too).
    @discardableResult
    public static func logoutStale(pid: Int32) -> Int {
        guard let fd = openRecords(utmpPath, create: false, group: nil) else { return 0 }
        defer { close(fd) }
        // init must not wait on a lock someone inside holds: a few tries, then give up.
        guard lock(fd, attempts: 3) else { return 0 }
        var found = 0
        var record = [UInt8](repeating: 0, count: recordSize)
        for index in 0..<maxRecords {
            let offset = off_t(index * recordSize)
            let n = record.withUnsafeMutableBytes { pread(fd, $0.baseAddress, recordSize, offset) }
            guard n == recordSize, let entry = Entry.decode(record[...]) else { break }
            guard entry.type == userProcess, entry.pid == pid else { continue }
            let dead = entry.dead(now: now())
            _ = dead.encoded().withUnsafeBytes { pwrite(fd, $0.baseAddress, recordSize, offset) }
            append(dead, to: wtmpPath, group: nil)
            found += 1
        }
        return found
    }

    /// Writes `entry` over the utmp slot with the same id (or a dead one), else at the end.
    static func update(_ entry: Entry, group: UInt32?) {
        guard let fd = openRecords(utmpPath, create: true, group: group) else { return }
        defer { close(fd) }
        guard lock(fd) else { return }
        var record = [UInt8](repeating: 0, count: recordSize)
        var slot: Int?
        var count = 0
        for index in 0..<maxRecords {
            let n = record.withUnsafeMutableBytes { pread(fd, $0.baseAddress, recordSize, off_t(index * recordSize)) }
            guard n == recordSize, let old = Entry.decode(record[...]) else { break }
            count = index + 1
            if (5...8).contains(old.type) && old.id == entry.id { slot = index; break }
        }
        let offset = off_t((slot ?? count) * recordSize)
        _ = entry.encoded().withUnsafeBytes { pwrite(fd, $0.baseAddress, recordSize, offset) }
    }

    static func append(_ entry: Entry, to path: String, group: UInt32?) {
        guard let fd = openRecords(path, create: true, group: group) else { return }
        defer { close(fd) }
        guard lock(fd) else { return }
        let size = lseek(fd, 0, SEEK_END)
        guard size >= 0 else { return }
        // A torn record from someone else would shift every later one: start at a boundary.
        var offset = size - size % off_t(recordSize)
        if offset == 0 {
            // busybox `last` walks the file backwards and stops before the record at offset
            // 0: an empty record (type EMPTY, ignored by every reader) goes first.
            _ = [UInt8](repeating: 0, count: recordSize).withUnsafeBytes { pwrite(fd, $0.baseAddress, recordSize, 0) }
            offset = off_t(recordSize)
        }
        _ = entry.encoded().withUnsafeBytes { pwrite(fd, $0.baseAddress, recordSize, offset) }
    }

    /// Opens a record file of the jail without following a symlink, and only if it is a
    /// regular file owned by root: the helper is privileged, the jail's files are not trusted.
    /// A missing file is created root-owned 0664, group utmp when the jail has one (when the
    /// directory is missing, nothing is written: jaild does not make directories in a root).
    /// The directory must be root's and writable by root only, checked on the directory that
    /// is then used (openat), so a user cannot steer the file elsewhere by a symlink swap.
    static func openRecords(_ path: String, create: Bool, group: UInt32?) -> Int32? {
        guard let slash = path.lastIndex(of: "/") else { return nil }
        let directory = open(String(path[..<slash]), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { return nil }
        defer { close(directory) }
        var dirInfo = stat()
        guard fstat(directory, &dirInfo) == 0, dirInfo.st_uid == 0, dirInfo.st_mode & 0o022 == 0 else { return nil }
        let name = String(path[path.index(after: slash)...])
        var fd = openat(directory, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        if fd < 0 && errno == ENOENT && create {
            fd = openat(directory, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o664)
            if fd >= 0 {
                _ = fchown(fd, 0, group ?? 0)
                _ = fchmod(fd, 0o664)
            }
        }
        guard fd >= 0 else { return nil }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// A whole-file write lock, waited for briefly (F_SETLK in a loop would spin; F_SETLKW
    /// could hang on a lock held inside the jail, so give up after ~1 s).
    static func lock(_ fd: Int32, attempts: Int = 100) -> Bool {
        var l = Glibc.flock()
        l.l_type = Int16(F_WRLCK)
        l.l_whence = Int16(SEEK_SET)
        for _ in 0..<attempts {
            if fcntl(fd, F_SETLK, &l) == 0 { return true }
            guard errno == EAGAIN || errno == EACCES || errno == EINTR else { return false }
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            nanosleep(&pause, nil)
        }
        return false
    }
}
