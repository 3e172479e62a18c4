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
        let fd = try JailError.wrap { () throws(SystemError) in try openFile(path, O_RDWR | O_CREAT | O_NOFOLLOW, mode: 0o644) }
        let info: stat
        do { info = try fd.fileStatus() } catch {
            fd.closeQuietly()
            throw .system(SystemError("fstat", path: path, errno: error.errno))
        }
        guard info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid() else {
            fd.closeQuietly()
            throw .socketInTheWay(path, reason: "the pid file is not a regular file of ours")
        }
        let locked: Bool
        do { locked = try fd.lock(wait: false) } catch {
            fd.closeQuietly()
            throw .system(SystemError("flock", path: path, errno: error.errno))
        }
        if !locked {
            // The holder's pid, for the message only: 0 when it cannot be read.
            let holder = String(decoding: (try? readFile(path)) ?? [], as: UTF8.self)
            fd.closeQuietly()
            let pid = Int32(holder.split(separator: "\n").first ?? "") ?? 0
            throw .alreadyRunning(socket: location.socketPath, pid: pid)
        }
        // `jaild stop` and `status` read the pid from it: a lock without its pid is not taken.
        // Written in place (the lock is on this inode, which a rename would replace).
        do { try fd.replaceContents(Array("\(getpid())\n".utf8), path: path) } catch {
            PidFile(fd: fd, path: path).release()
            throw .system(error)
        }
        return PidFile(fd: fd, path: path)
    }

    /// Removes the pid file while still holding the lock, then lets go.
    func release() {
        // Left behind, it is only stale: its lock is gone with this process, and the next
        // start takes it over.
        do { try removeFile(path) } catch { log.warning("cannot remove the pid file: \(error)") }
        fd.closeQuietly()
    }

    /// The supervisor pid recorded in a pid file, if a live jaild holds its lock.
    static func runningPid(path: String) -> Int32? {
        // A pid file that cannot be opened or locked has no live jaild to name.
        guard let fd = try? openFile(path, O_RDONLY | O_NOFOLLOW) else { return nil }
        defer { fd.closeQuietly() }
        // Taken: nobody holds it. A lock that fails otherwise is read as held, as before.
        if (try? fd.lock(exclusive: false, wait: false)) == true { return nil }
        // Read through the descriptor just lock-tested (`jaild list` does this per jail).
        let text = String(decoding: (try? readAll(fd, limit: 64)) ?? [], as: UTF8.self)
        return Int32(text.split(separator: "\n").first ?? "")
    }

    static func isLocked(_ path: String) -> Bool { runningPid(path: path) != nil }
}
