import CJail
import JailProtocol
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

extension Control {
    /// `jaild stop` of a jail whose supervisor died and that no jaild has adopted yet: with the
    /// pid file's lock held (so no jaild adopts it meanwhile), init gets SIGTERM through a
    /// pidfd, the same graceful stop as from its supervisor; once it has exited, its socket,
    /// files, port filter and cgroups go. A state whose init is gone is only cleaned up.
    static func stopOrphan(pidFile: String, timeoutSeconds: Int32, stateName: String? = nil) -> Int32 {
        let entry = stateName.map { name in JailState.load(name: name).map { (name: name, state: $0) } }
            ?? JailState.named().first(where: { $0.state.pidFile == pidFile })
        guard let (name, state) = entry, state.pidFile == pidFile, state.identity != nil else { return 0 }
        let location = SocketLocation(socketPath: state.socket)
        let lock: PidFile
        do { lock = try PidFile.acquire(location) } catch {
            // A jaild has just adopted it: stop through that one.
            if PidFile.runningPid(path: pidFile) != nil { return stop(pidFile, timeoutSeconds: timeoutSeconds) }
            JailLogHandler.emitToTerminal("\(error)")
            return 1
        }
        if let identity = state.identity {
            let pidfd = cj_pidfd_open(state.initPid)
            if pidfd >= 0 {
                defer { close(pidfd) }
                if ProcessIdentity.of("\(state.initPid)") == identity {
                    _ = cj_pidfd_send_signal(pidfd, SIGTERM)
                    var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                    var rc: Int32
                    repeat { rc = poll(&entry, 1, timeoutSeconds * 1000) } while rc < 0 && errno == EINTR
                    if rc == 0 {
                        JailLogHandler.emitToTerminal("the jail's init (pid \(state.initPid)) did not stop within \(timeoutSeconds) s")
                        lock.fd.closeQuietly()
                        return 1
                    }
                }
            }
        }
        unlink(state.socket)
        unlink(AdoptionChannel.controlPath(socketPath: state.socket))
        let cgroups = JailCgroups(name: name, directories: state.cgroups,
                                  unifiedDirectory: state.cgroup.isEmpty ? nil : state.cgroup, programDirectories: [])
        PortFilter.detach(from: cgroups)
        cgroups.remove()
        JailState.remove(name: name)
        lock.release()
        return 0
    }
}
