import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What a supervisor holds of its jail's init, whether it cloned it (Supervisor+Clone.swift)
/// or took it over from a supervisor that died (Supervisor+Adopt.swift): the loop of
/// RunningJail runs on it either way.
struct InitHandle {
    let pid: pid_t
    /// An adopted init is not this supervisor's child: its pidfd says when it has exited, and
    /// signals go through it (never to a later process with the same pid). nil for an init
    /// cloned here, whose exit comes as SIGCHLD and is reaped.
    let pidfd: FileDescriptor?
    /// init's and its helpers' log lines (PipeLogLevel letters in front).
    let logPipe: FileDescriptor
    /// The boot commands' output: the jail's to write, bounded when relayed (LogLines.swift).
    let bootOutput: FileDescriptor
    let cgroups: JailCgroups?

    /// Sends `signal` to init: false when it has exited already; any other failure (EPERM)
    /// is thrown.
    @discardableResult
    func deliver(_ signal: Int32) throws(SystemError) -> Bool {
        if let pidfd { return try sendSignal(signal, toProcess: pidfd) }
        return try sendSignal(signal, to: pid)
    }
}
