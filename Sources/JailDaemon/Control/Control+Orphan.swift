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
        // No pidfd: init has exited already, and only its files are left to clean up.
        if let identity = state.identity, let pidfd = try? openProcess(state.initPid) {
            defer { closeDescriptor(pidfd.rawValue) }
            if ProcessIdentity.of("\(state.initPid)") == identity {
                let stopped: Bool
                do { stopped = try sendSignal(SIGTERM, toProcess: pidfd) ? waitForExit(pidfd, milliseconds: timeoutSeconds * 1000) : true } catch {
                    JailLogHandler.emitToTerminal("cannot stop the jail's init (pid \(state.initPid)): \(error)")
                    lock.fd.closeQuietly()
                    return 1
                }
                if !stopped {
                    JailLogHandler.emitToTerminal("the jail's init (pid \(state.initPid)) did not stop within \(timeoutSeconds) s")
                    lock.fd.closeQuietly()
                    return 1
                }
            }
        }
        for path in [state.socket, AdoptionAndEntryChannel.controlPath(socketPath: state.socket)] {
            do { try removeFile(path) } catch { JailLogHandler.emitToTerminal("warning: cannot remove \(error)") }
        }
        let cgroups = JailCgroups(name: name, directories: state.cgroups,
                                  unifiedDirectory: state.cgroup.isEmpty ? nil : state.cgroup, programDirectories: [])
        PortFilter.detach(from: cgroups)
        cgroups.remove()
        JailState.remove(name: name)
        lock.release()
        return 0
    }
}
