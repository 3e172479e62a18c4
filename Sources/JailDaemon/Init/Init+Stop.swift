import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Stopping the jail: TERM to everything, then KILL to all but the session helpers, which
/// report how their programs ended before they go.
extension Init {
    /// SIGTERM to everything in the jail, SIGKILL to what is left after the stop timeout.
    mutating func beginStop() {
        guard !stopping else { return }
        stopping = true
        stopDeadline = monotonicMilliseconds() + Int64(configuration.stopTimeout) * 1000
        listener.closeQuietly()
        // kill(-1) from a PID namespace's init reaches every process in it except init.
        kill(-1, SIGTERM)
        kill(-1, SIGCONT)
        reapAll()
        if !hasChildren() { _exit(0) }
    }

    mutating func reapAll() {
        while let child = reapChild() {
            helpers.remove(child.pid)
            if let command = bootCommands.removeValue(forKey: child.pid) {
                if stopping && (child.code == 128 + SIGTERM || child.code == 128 + SIGKILL) {
                    // The stop ended it: that is how a service ends, not a failure.
                    log.info("boot command '\(command)' stopped")
                } else if child.code == 0 {
                    log.info("boot command '\(command)' exited with status 0")
                } else {
                    log.error("boot command '\(command)' exited with status \(child.code)")
                }
            }
        }
    }


    /// SIGKILL to every process of the jail except the helpers, which then report 137 to their
    /// clients and exit. Everything is stopped first, so nothing forks while the list is read.
    mutating func killPrograms() {
        killedPrograms = true
        stopDeadline = monotonicMilliseconds() + Self.helperGraceMilliseconds
        kill(-1, SIGSTOP)
        for pid in jailProcesses() where pid != 1 && !helpers.contains(pid) { kill(pid, SIGKILL) }
        for pid in helpers { kill(pid, SIGCONT) }
        reapAll()
        if !hasChildren() { _exit(0) }
    }

    static let helperGraceMilliseconds: Int64 = 2000

    /// The pids of this PID namespace, from the jail's own /proc.
    func jailProcesses() -> [pid_t] {
        listDirectory("/proc").compactMap { pid_t($0) }
    }

    /// Last resort when helpers do not finish in time: everything goes.
    func killEverythingAndExit() -> Never {
        kill(-1, SIGKILL)
        while wait(nil) > 0 || errno == EINTR {}
        _exit(0)
    }
}
