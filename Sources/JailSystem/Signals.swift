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
        try receive().map { ($0.signal, $0.sender) }
    }

    /// The pending signals with where each came from.
    public func receive() throws(SystemError) -> [ReceivedSignal] {
        var result: [ReceivedSignal] = []
        while true {
            var signo: Int32 = 0
            var sender: Int32 = 0
            var code: Int32 = 0
            let got = try syscall("read(signalfd)") { cj_read_signal(fd.rawValue, &signo, &sender, &code) }
            if got == 0 { return result }
            result.append(ReceivedSignal(signal: signo, sender: sender, code: code))
        }
    }
}

/// One signal read from a signalfd: the number, the sender's pid as this pid namespace sees it
/// (0 for a sender outside it, and for a signal the kernel generated) and `si_code`.
public struct ReceivedSignal: Equatable, Sendable {
    public let signal: Int32
    public let sender: Int32
    public let code: Int32

    public init(signal: Int32, sender: Int32, code: Int32) {
        self.signal = signal
        self.sender = sender
        self.code = code
    }

    /// `si_code` of kill(2) and pidfd_send_signal(2) without info (SI_USER), and of tgkill(2)
    /// (SI_TKILL): the kernel fills in the sender's pid for these, and no process can send them
    /// with a pid of its choosing (rt_sigqueueinfo refuses codes >= 0 and SI_TKILL to another
    /// process). A SIGIO-style signal (F_SETSIG: POLL_IN, …) and SI_KERNEL are positive and
    /// carry pid 0 whoever caused them; SI_QUEUE's pid is whatever the sender wrote.
    public static let sentByKill: Int32 = 0
    public static let sentByTgkill: Int32 = -6

    /// Sent with kill(2) or tgkill(2) by a process outside this PID namespace: the only way the
    /// host's kill, systemd's KillSignal and jaild's stop reach a namespace's init, and one no
    /// process inside can take (it has a pid here, and cannot choose a kill's pid).
    public var killedFromOutside: Bool {
        sender == 0 && (code == Self.sentByKill || code == Self.sentByTgkill)
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
