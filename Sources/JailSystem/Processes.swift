import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Signals and waits on processes, for every room: one copy of the EINTR loops, of the pidfd
// wait with a timeout and of the "is it still there" question.

/// kill(2): true when the signal was sent, false when no such process is left (ESRCH); any
/// other failure (EPERM: not ours to signal) is thrown.
@discardableResult
public func sendSignal(_ signal: Int32, to pid: pid_t) throws(SystemError) -> Bool {
    if kill(pid, signal) == 0 { return true }
    if Glibc.errno == ESRCH { return false }
    throw SystemError.last("kill(\(signal))", path: "\(pid)")
}

/// SIGKILL to a child this process made and is about to reap: it cannot fail for another
/// reason than the child having exited already, which the wait that follows sees.
public func killChild(_ pid: pid_t) {
    _ = kill(pid, SIGKILL)
}

/// Blocks until child `pid` exits; its raw wait status. nil if it is not (or no longer) our child.
@discardableResult
public func waitForChild(_ pid: pid_t) -> Int32? {
    var status: Int32 = 0
    while true {
        if waitpid(pid, &status, 0) == pid { return status }
        if Glibc.errno != EINTR { return nil }
    }
}

/// The raw wait status of child `pid` if it has exited, without blocking.
public func exitedChildStatus(_ pid: pid_t) -> Int32? {
    var status: Int32 = 0
    while true {
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid { return status }
        if reaped < 0 && Glibc.errno == EINTR { continue }
        return nil
    }
}

/// A shell-style exit code from a raw wait status (128+N for signal N).
public func exitCode(ofStatus status: Int32) -> Int32 { cj_status_to_code(status) }

/// A pidfd of `pid` (pidfd_open(2)): it refers to that process and never to a later one with its pid.
public func openProcess(_ pid: pid_t) throws(SystemError) -> FileDescriptor {
    FileDescriptor(rawValue: try syscall("pidfd_open", path: "\(pid)") { cj_pidfd_open(pid) })
}

/// Waits at most `milliseconds` (-1: for ever) for the process of `pidfd` to exit: true when it did.
public func waitForExit(_ pidfd: FileDescriptor, milliseconds: Int32) throws(SystemError) -> Bool {
    try pidfd.waitReadable(milliseconds: milliseconds)
}

extension FileDescriptor {
    /// Waits at most `milliseconds` (-1: for ever) for this descriptor to become readable (or
    /// hung up): true when it did, false at the timeout. EINTR waits on for the time left.
    public func waitReadable(milliseconds: Int32) throws(SystemError) -> Bool {
        let deadline = monotonicMilliseconds() + Int64(milliseconds)
        var entry = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        while true {
            let left = milliseconds < 0 ? -1 : Int32(max(0, deadline - monotonicMilliseconds()))
            let ready = poll(&entry, 1, left)
            if ready > 0 { return true }
            if ready == 0 { return false }
            if Glibc.errno != EINTR { throw SystemError.last("poll") }
        }
    }

    /// Whether this descriptor is readable (or hung up) right now.
    public func isReadable() throws(SystemError) -> Bool {
        try waitReadable(milliseconds: 0)
    }

    /// fstat(2).
    public func fileStatus() throws(SystemError) -> Glibc.stat {
        var info = Glibc.stat()
        try syscall("fstat") { Glibc.fstat(rawValue, &info) }
        return info
    }

    /// flock(2) of the whole file: false when `wait` is false and another holds it.
    @discardableResult
    public func lock(exclusive: Bool = true, wait: Bool = true) throws(SystemError) -> Bool {
        let operation = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)
        while true {
            if flock(rawValue, operation) == 0 { return true }
            if Glibc.errno == EINTR { continue }
            if Glibc.errno == EWOULDBLOCK && !wait { return false }
            throw SystemError.last("flock")
        }
    }
}

/// pidfd_send_signal(2): `signal` to the process of `pidfd`, never to a later one with its
/// pid. True when it was sent, false when the process has exited already (ESRCH).
@discardableResult
public func sendSignal(_ signal: Int32, toProcess pidfd: FileDescriptor) throws(SystemError) -> Bool {
    if cj_pidfd_send_signal(pidfd.rawValue, signal) == 0 { return true }
    if Glibc.errno == ESRCH { return false }
    throw SystemError.last("pidfd_send_signal(\(signal))")
}

extension FileDescriptor {
    /// A POSIX record lock (fcntl F_SETLK) on the whole file, as lckpwdf(3) takes on
    /// /etc/.pwd.lock: false when another process holds it (the caller decides how long to
    /// retry). Unlike flock it is dropped by any close of the file in this process.
    public func recordLock() throws(SystemError) -> Bool {
        var whole = Glibc.flock()
        whole.l_type = Int16(F_WRLCK)
        whole.l_whence = Int16(SEEK_SET)
        while true {
            if fcntl(rawValue, F_SETLK, &whole) == 0 { return true }
            switch Glibc.errno {
            case EINTR: continue
            case EAGAIN, EACCES: return false
            default: throw SystemError.last("fcntl(F_SETLK)")
            }
        }
    }
}

/// pidfd_getfd(2): a copy (close-on-exec) of descriptor `fd` of the process of `pidfd`, which
/// the caller must be allowed to ptrace.
public func copyDescriptor(_ fd: Int32, ofProcess pidfd: FileDescriptor) throws(SystemError) -> FileDescriptor {
    FileDescriptor(rawValue: try syscall("pidfd_getfd", path: "\(fd)") { cj_pidfd_getfd(pidfd.rawValue, fd) })
}
