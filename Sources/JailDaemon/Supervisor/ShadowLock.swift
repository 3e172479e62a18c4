import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// The locks the shadow tools (useradd, usermod, newusers) take before they change
/// /etc/subuid and /etc/subgid, taken the same way so that jaild and they never write those
/// files at once:
/// 1. lckpwdf(3): a write lock (fcntl) on /etc/.pwd.lock. shadow's commonio_lock calls it
///    first and then takes each file's own lock once, without retrying; holding it first, as
///    they do, makes a concurrent useradd wait for jaild (lckpwdf waits up to 15 s) instead of
///    failing with "cannot lock /etc/subuid".
/// 2. For each file, commonio's lock file: `FILE.PID` holding the pid, link(2)ed to
///    `FILE.lock` (link is atomic, also over NFS); taken when the link count of `FILE.PID` is
///    2 afterwards. A lock whose pid is gone is stale and removed.
/// Each step is retried every 50 ms for at most `deadlineMilliseconds`, then refused with
/// the holder named.
struct ShadowLock {
    static let passwordLock = "/etc/.pwd.lock"
    static let deadlineMilliseconds: Int64 = 5000

    let passwordLockFD: Int32
    let lockFiles: [String]

    /// Locks /etc/.pwd.lock, then `files` (as `FILE.lock`) in order.
    static func acquire(_ files: [String]) throws(JailError) -> ShadowLock {
        let deadline = monotonicMilliseconds() + deadlineMilliseconds
        let fd = open(passwordLock, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd < 0 { throw .system(.last("open", path: passwordLock)) }
        var whole = flock()
        whole.l_type = Int16(F_WRLCK)
        whole.l_whence = Int16(SEEK_SET)
        while fcntl(fd, F_SETLK, &whole) < 0 {
            let error = SystemError.last("fcntl(F_SETLK)", path: passwordLock)
            guard errno == EAGAIN || errno == EACCES || errno == EINTR else {
                close(fd)
                throw .system(error)
            }
            guard monotonicMilliseconds() < deadline else {
                close(fd)
                throw .userNamespace("cannot reserve the jail's ids: \(passwordLock) is held by another program "
                    + "(useradd, usermod, vipw?) for more than \(deadlineMilliseconds / 1000) s")
            }
            usleep(50_000)
        }
        var taken: [String] = []
        for file in files {
            do throws(JailError) {
                try lockFile(file, deadline: deadline)
                taken.append(file + ".lock")
            } catch {
                ShadowLock(passwordLockFD: fd, lockFiles: taken).release()
                throw error
            }
        }
        return ShadowLock(passwordLockFD: fd, lockFiles: taken)
    }

    /// In reverse order: the files' locks, then /etc/.pwd.lock (closing it drops the lock).
    func release() {
        for lock in lockFiles.reversed() where unlink(lock) < 0 {
            // Left behind, it would hold off useradd for as long as this process lives.
            log.error("\(SystemError.last("unlink", path: lock)): remove it by hand, or useradd cannot lock it")
        }
        close(passwordLockFD)
    }

    /// commonio's do_lock_file: `file.PID` → `file.lock`.
    static func lockFile(_ file: String, deadline: Int64) throws(JailError) {
        let mine = "\(file).\(getpid())"
        let lock = file + ".lock"
        let pid = Array("\(getpid())\0".utf8)
        while true {
            let fd = open(mine, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
            if fd < 0 { throw .system(.last("open", path: mine)) }
            let written = pid.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fdatasync(fd)
            close(fd)
            if written != pid.count || synced < 0 {
                let error = SystemError.last("write", path: mine)
                unlink(mine)
                throw .system(error)
            }
            let linked = link(mine, lock) == 0
            let error = SystemError.last("link", path: lock)
            var info = stat()
            let held = linked && stat(mine, &info) == 0 && info.st_nlink == 2
            unlink(mine)
            if held { return }
            if !linked && error.errno != .fileExists { throw .system(error) }
            // Someone holds it. A holder that is gone left a stale lock: removed, as commonio does.
            if let holder = lockHolder(lock), kill(holder, 0) < 0 && errno == ESRCH {
                unlink(lock)
                continue
            }
            guard monotonicMilliseconds() < deadline else {
                let who = lockHolder(lock).map { "process \($0)" } ?? "another program"
                throw .userNamespace("cannot reserve the jail's ids: \(lock) is held by \(who) "
                    + "for more than \(deadlineMilliseconds / 1000) s")
            }
            usleep(50_000)
        }
    }

    /// The pid in a lock file (a decimal number, NUL-terminated by shadow), if it holds one.
    static func lockHolder(_ lock: String) -> pid_t? {
        guard let bytes = try? readFile(lock, limit: 32) else { return nil }
        let digits = bytes.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        return pid_t(String(decoding: digits, as: UTF8.self)).flatMap { $0 > 0 ? $0 : nil }
    }
}
