import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The pid file next to the socket: it holds the supervisor's pid, and its flock is what
/// makes a jail's socket its own. The lock lives as long as the supervisor; a dead jaild's
/// lock is gone, so its socket and pid file are known to be stale.
struct PidFile {
    let fd: FileDescriptor
    let path: String

    static func acquire(_ location: SocketLocation) throws(JailError) -> PidFile {
        let path = location.pidPath
        let raw = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        if raw < 0 { throw .system(.last("open", path: path)) }
        let fd = FileDescriptor(rawValue: raw)
        var info = stat()
        guard fstat(raw, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid() else {
            fd.closeQuietly()
            throw .socketInTheWay(path, reason: "the pid file is not a regular file of ours")
        }
        if flock(raw, LOCK_EX | LOCK_NB) < 0 {
            let holder = String(decoding: (try? readFile(path)) ?? [], as: UTF8.self)
            fd.closeQuietly()
            let pid = Int32(holder.split(separator: "\n").first ?? "") ?? 0
            throw .alreadyRunning(socket: location.socketPath, pid: pid)
        }
        let text = Array("\(getpid())\n".utf8)
        // `jaild stop` and `status` read the pid from it: a lock without its pid is not taken.
        var failure: SystemError?
        if ftruncate(raw, 0) < 0 {
            failure = .last("ftruncate", path: path)
        } else {
            let written = text.withUnsafeBytes { pwrite(raw, $0.baseAddress, $0.count, 0) }
            if written < 0 { failure = .last("write", path: path) }
            else if written != text.count { failure = SystemError("write", path: path, errno: .noSpace) }
        }
        if let failure {
            PidFile(fd: fd, path: path).release()
            throw .system(failure)
        }
        return PidFile(fd: fd, path: path)
    }

    /// Removes the pid file while still holding the lock, then lets go.
    func release() {
        unlink(path)
        fd.closeQuietly()
    }

    /// The supervisor pid recorded in a pid file, if a live jaild holds its lock.
    static func runningPid(path: String) -> Int32? {
        let raw = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if raw < 0 { return nil }
        defer { close(raw) }
        if flock(raw, LOCK_SH | LOCK_NB) == 0 { return nil }
        // Read through the descriptor just locked-tested (`jaild list` does this per jail).
        let text = String(decoding: (try? readAll(FileDescriptor(rawValue: raw), limit: 64)) ?? [], as: UTF8.self)
        return Int32(text.split(separator: "\n").first ?? "")
    }

    static func isLocked(_ path: String) -> Bool { runningPid(path: path) != nil }
}
