import JailSystem
import SystemPackage

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

    let passwordLockFD: FileDescriptor
    let lockFiles: [String]

    /// Locks /etc/.pwd.lock, then `files` (as `FILE.lock`) in order. `purpose` leads a refusal:
    /// "cannot PURPOSE: /etc/.pwd.lock is held by …".
    static func acquire(_ files: [String], purpose: String = "reserve the jail's ids") throws(JailError) -> ShadowLock {
        let deadline = monotonicMilliseconds() + deadlineMilliseconds
        let fd = try JailError.wrap { () throws(SystemError) in
            try openFile(passwordLock, O_WRONLY | O_CREAT | O_NOFOLLOW, mode: 0o600)
        }
        while true {
            let locked: Bool
            do { locked = try fd.recordLock() } catch {
                fd.closeQuietly()
                throw .system(SystemError(error.operation, path: passwordLock, errno: error.errno))
            }
            if locked { break }
            guard monotonicMilliseconds() < deadline else {
                fd.closeQuietly()
                throw .userNamespace("cannot \(purpose): \(passwordLock) is held by another program "
                    + "(useradd, usermod, vipw?) for more than \(deadlineMilliseconds / 1000) s")
            }
            sleepMilliseconds(50)
        }
        var taken: [String] = []
        for file in files {
            do throws(JailError) {
                try lockFile(file, deadline: deadline, purpose: purpose)
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
        for lock in lockFiles.reversed() {
            // Left behind, it would hold off useradd for as long as this process lives.
            do { try removeFile(lock) } catch { log.error("\(error): remove it by hand, or useradd cannot lock it") }
        }
        passwordLockFD.closeQuietly()
    }

    /// commonio's do_lock_file: `file.PID` → `file.lock`.
    static func lockFile(_ file: String, deadline: Int64, purpose: String = "reserve the jail's ids") throws(JailError) {
        let mine = "\(file).\(getpid())"
        let lock = file + ".lock"
        let pid = Array("\(getpid())\0".utf8)
        while true {
            do throws(SystemError) {
                try writeFile(mine, pid, mode: 0o600)
                try syncFile(mine, dataOnly: true)
            } catch {
                discardFile(mine)
                throw .system(error)
            }
            var linkFailure: SystemError?
            do { try makeHardLink(mine, at: lock) } catch { linkFailure = error }
            // Held when `mine` has the two names now (over NFS, link can succeed and say it failed).
            let held: Bool
            do throws(SystemError) {
                let links = linkFailure == nil ? try fileStatus(mine)?.st_nlink : nil
                held = links == 2
            } catch {
                discardFile(mine)
                throw .system(error)
            }
            // The lock is `lock`; a `mine` left behind holds nothing, it is only litter in /etc.
            do { try removeFile(mine) } catch { log.warning("\(error): remove it by hand") }
            if held { return }
            if let linkFailure, linkFailure.errno != .fileExists { throw .system(linkFailure) }
            // Someone holds it. A holder that is gone left a stale lock: removed, as commonio does.
            if let holder = lockHolder(lock), !(try processExists(holder)) {
                try JailError.wrap { () throws(SystemError) in try removeFile(lock) }
                continue
            }
            guard monotonicMilliseconds() < deadline else {
                let who = lockHolder(lock).map { "process \($0)" } ?? "another program"
                throw .userNamespace("cannot \(purpose): \(lock) is held by \(who) "
                    + "for more than \(deadlineMilliseconds / 1000) s")
            }
            sleepMilliseconds(50)
        }
    }

    /// Whether `pid` names a live process (kill 0): EPERM (another user's) counts as alive.
    static func processExists(_ pid: pid_t) throws(JailError) -> Bool {
        do { return try sendSignal(0, to: pid) } catch {
            if error.errno == .notPermitted { return true }
            throw .system(error)
        }
    }

    /// The pid in a lock file (a decimal number, NUL-terminated by shadow), if it holds one.
    static func lockHolder(_ lock: String) -> pid_t? {
        guard let bytes = try? readFile(lock, limit: 32) else { return nil }
        let digits = bytes.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        return pid_t(String(decoding: digits, as: UTF8.self)).flatMap { $0 > 0 ? $0 : nil }
    }
}
