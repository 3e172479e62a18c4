import JailSystem
import SystemPackage

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
        wallClockTime()
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

    // The records are a courtesy to `who` and `last` inside: where the jail has no root-owned
    // /var/run or /var/log, or someone inside holds the lock, nothing is written (by design);
    // a failure of the file itself (EIO, a full disk) is a warning, and the session goes on.

    /// For init at start, on the jail's fresh /run: the boot's records into utmp (which is
    /// new, so they are its first two) and wtmp (`last reboot`). Returns false when utmp
    /// could not be written (no /run or /var/run in the jail, or not root's).
    @discardableResult
    public static func recordBoot(runlevel: Character, group: UInt32?) -> Bool {
        let records = bootRecords(runlevel: runlevel, now: now())
        do {
            guard let fd = try openRecords(utmpPath, create: true, group: group) else { return false }
            defer { closeDescriptor(fd.rawValue) }
            guard try lock(fd, path: utmpPath) else { return false }
            for (index, entry) in records.enumerated() {
                try fd.writeBytes(entry.encoded(), at: Int64(index * recordSize), path: utmpPath)
            }
        } catch {
            log.warning("utmp: \(error)")
            return false
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
        var found = 0
        do {
            guard let fd = try openRecords(utmpPath, create: false, group: nil) else { return 0 }
            defer { closeDescriptor(fd.rawValue) }
            // init must not wait on a lock someone inside holds: a few tries, then give up.
            guard try lock(fd, path: utmpPath, attempts: 3) else { return 0 }
            for index in 0..<maxRecords {
                let offset = Int64(index * recordSize)
                let record = try fd.readBytes(count: recordSize, at: offset, path: utmpPath)
                guard record.count == recordSize, let entry = Entry.decode(record[...]) else { break }
                guard entry.type == userProcess, entry.pid == pid else { continue }
                let dead = entry.dead(now: now())
                try fd.writeBytes(dead.encoded(), at: offset, path: utmpPath)
                append(dead, to: wtmpPath, group: nil)
                found += 1
            }
        } catch {
            log.warning("utmp: \(error)")
        }
        return found
    }

    /// Writes `entry` over the utmp slot with the same id (or a dead one), else at the end.
    static func update(_ entry: Entry, group: UInt32?) {
        do {
            guard let fd = try openRecords(utmpPath, create: true, group: group) else { return }
            defer { closeDescriptor(fd.rawValue) }
            guard try lock(fd, path: utmpPath) else { return }
            var slot: Int?
            var count = 0
            for index in 0..<maxRecords {
                let record = try fd.readBytes(count: recordSize, at: Int64(index * recordSize), path: utmpPath)
                guard record.count == recordSize, let old = Entry.decode(record[...]) else { break }
                count = index + 1
                if (5...8).contains(old.type) && old.id == entry.id { slot = index; break }
            }
            try fd.writeBytes(entry.encoded(), at: Int64((slot ?? count) * recordSize), path: utmpPath)
        } catch {
            log.warning("utmp: \(error)")
        }
    }

    static func append(_ entry: Entry, to path: String, group: UInt32?) {
        do {
            guard let fd = try openRecords(path, create: true, group: group) else { return }
            defer { closeDescriptor(fd.rawValue) }
            guard try lock(fd, path: path) else { return }
            let size = try fd.endOffset(path: path)
            // A torn record from someone else would shift every later one: start at a boundary.
            var offset = size - size % Int64(recordSize)
            if offset == 0 {
                // busybox `last` walks the file backwards and stops before the record at offset
                // 0: an empty record (type EMPTY, ignored by every reader) goes first.
                try fd.writeBytes([UInt8](repeating: 0, count: recordSize), at: 0, path: path)
                offset = Int64(recordSize)
            }
            try fd.writeBytes(entry.encoded(), at: offset, path: path)
        } catch {
            log.warning("\(path == wtmpPath ? "wtmp" : "utmp"): \(error)")
        }
    }

    /// Opens a record file of the jail without following a symlink, and only if it is a
    /// regular file owned by root: the helper is privileged, the jail's files are not trusted.
    /// A missing file is created root-owned 0664, group utmp when the jail has one (when the
    /// directory is missing, nothing is written: jaild does not make directories in a root).
    /// The directory must be root's and writable by root only, checked on the directory that
    /// is then used (openat), so a user cannot steer the file elsewhere by a symlink swap.
    /// nil where nothing is to be written; a failure of the calls themselves is thrown.
    static func openRecords(_ path: String, create: Bool, group: UInt32?) throws(SystemError) -> FileDescriptor? {
        guard let slash = path.lastIndex(of: "/") else { return nil }
        let directoryPath = String(path[..<slash])
        guard let directory = try openFileIfPresent(directoryPath, O_RDONLY | O_DIRECTORY) else { return nil }
        defer { closeDescriptor(directory.rawValue) }
        let directoryInfo = try directory.fileStatus()
        guard directoryInfo.st_uid == 0, directoryInfo.st_mode & 0o022 == 0 else { return nil }
        let name = String(path[path.index(after: slash)...])
        var opened = try openFileIfPresent(name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, in: directory)
        if opened == nil && create {
            // Another helper may make it first: then this one writes nothing this time.
            do { opened = try openFile(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o664, in: directory) } catch where error.errno == .fileExists {
                return nil
            }
            if let made = opened {
                // Without its group the file still works: only the jail's utmp-group programs
                // (screen, tmux) lose writing it, which they tolerate.
                do {
                    try made.setOwner(uid: 0, gid: group ?? 0, path: path)
                    try made.setMode(0o664, path: path)
                } catch { log.warning("utmp: \(error)") }
            }
        }
        guard let fd = opened else { return nil }
        let info: stat
        do { info = try fd.fileStatus() } catch {
            closeDescriptor(fd.rawValue)
            throw SystemError("fstat", path: path, errno: error.errno)
        }
        guard info.st_mode & S_IFMT == S_IFREG, info.st_uid == 0 else {
            closeDescriptor(fd.rawValue)
            return nil
        }
        return fd
    }

    /// A whole-file write lock, waited for briefly (F_SETLK in a loop would spin; F_SETLKW
    /// could hang on a lock held inside the jail, so give up after ~1 s).
    static func lock(_ fd: FileDescriptor, path: String, attempts: Int = 100) throws(SystemError) -> Bool {
        for _ in 0..<attempts {
            do { if try fd.recordLock() { return true } } catch { throw SystemError(error.operation, path: path, errno: error.errno) }
            sleepMilliseconds(10)
        }
        return false
    }
}
