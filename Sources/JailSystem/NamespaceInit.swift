import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// What the init of a PID namespace does to the processes of its namespace and to its own
// children: jaild's init at stop, and before it exits.

/// kill(-1, signal) from a PID namespace's init: every process of the namespace but init itself
/// (kill(2) never signals the caller, and a namespace's init sees no process outside it). Its
/// only failure, ESRCH, means no process is left to signal, which the stop learns from its
/// children anyway.
public func signalEveryProcessButInit(_ signal: Int32) {
    _ = kill(-1, signal)
}

/// Whether this process has a child, exited or not: waitid(2) with WNOWAIT, so nothing is reaped.
public func hasChildProcesses() -> Bool {
    var info = siginfo_t()
    while true {
        if waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 { return true }
        if Glibc.errno != EINTR { return false }  // ECHILD
    }
}

/// Blocks until every child has exited, and reaps each: wait(2) until ECHILD.
public func reapEveryChild() {
    while wait(nil) > 0 || Glibc.errno == EINTR {}
}

extension FileDescriptor {
    /// Whether the other end of this pipe or socket is closed (POLLHUP or POLLERR), now and
    /// without reading: data waiting to be read does not count, unlike `isReadable`.
    public func isHungUp() -> Bool {
        var entry = pollfd(fd: rawValue, events: 0, revents: 0)
        return poll(&entry, 1, 0) > 0
    }

    /// fcntl(F_SETPIPE_SZ): the pipe's capacity, at least `bytes` (the kernel rounds up to a
    /// power of two pages; above /proc/sys/fs/pipe-max-size it takes CAP_SYS_RESOURCE).
    public func setPipeCapacity(_ bytes: Int32) throws(SystemError) {
        // F_LINUX_SPECIFIC_BASE + 7, which Glibc's Swift module does not export.
        let setPipeSize: Int32 = 1031
        try syscall("fcntl(F_SETPIPE_SZ)") { fcntl(rawValue, setPipeSize, bytes) }
    }
}

/// kill(2) to a process of this namespace whose failure leaves the caller nothing to do: gone
/// already (ESRCH), or out of reach by design (EPERM: another Landlock domain's, say).
public func signalIfReachable(_ signal: Int32, to pid: pid_t) {
    _ = kill(pid, signal)
}
