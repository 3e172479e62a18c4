import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The calling thread's signal mask before `block` changed it: `restore` puts it back. For a
/// step that must not be cut in half by Ctrl-C or a TERM (the signals wait until `restore`).
public struct BlockedSignals {
    private var previous = sigset_t()

    /// sigprocmask(SIG_BLOCK) of `signals`.
    public init(_ signals: [Int32]) throws(SystemError) {
        var blocked = sigset_t()
        sigemptyset(&blocked)
        for signal in signals { sigaddset(&blocked, signal) }
        try syscall("sigprocmask(SIG_BLOCK)") { sigprocmask(SIG_BLOCK, &blocked, &previous) }
    }

    /// The mask as it was; sigprocmask(SIG_SETMASK) of a mask it returned cannot fail.
    public func restore() {
        var mask = previous
        _ = sigprocmask(SIG_SETMASK, &mask, nil)
    }
}
