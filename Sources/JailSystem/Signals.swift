import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A signalfd: signals are blocked and read in the poll loop, never handled asynchronously.
public struct SignalDescriptor {
    public let fd: FileDescriptor

    /// Blocks `signals` in the (single) calling thread and opens a signalfd for them.
    /// The corresponding C functions are `sigprocmask` and `signalfd`.
    public init(_ signals: [Int32]) throws(SystemError) {
        let raw = try signals.withUnsafeBufferPointer { (buffer) throws(SystemError) in
            try syscall("signalfd") { cj_signalfd(buffer.baseAddress, Int32(buffer.count)) }
        }
        fd = FileDescriptor(rawValue: raw)
    }

    /// The pending signals, each with the pid of its sender as this pid namespace sees it
    /// (0 for a sender outside it, such as the host).
    public func drain() throws(SystemError) -> [(signal: Int32, sender: Int32)] {
        var result: [(Int32, Int32)] = []
        while true {
            var signo: Int32 = 0
            var sender: Int32 = 0
            let got = try syscall("read(signalfd)") { cj_read_signal(fd.rawValue, &signo, &sender) }
            if got == 0 { return result }
            result.append((signo, sender))
        }
    }
}

/// Reaps one exited child without blocking: its pid and shell-style code (128+N for signal N).
public func reapChild(_ pid: pid_t = -1) -> (pid: pid_t, code: Int32)? {
    var status: Int32 = 0
    while true {
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped < 0 && Glibc.errno == EINTR { continue }
        if reaped <= 0 { return nil }
        return (reaped, cj_status_to_code(status))
    }
}
