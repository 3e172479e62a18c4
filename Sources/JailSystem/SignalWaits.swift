import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Waits until one of `signals` (blocked in the calling thread) is pending, takes it and
/// returns its number (sigwaitinfo(2)); another signal that interrupts the wait waits on.
/// For a process with nothing to do but wait, where a signalfd and a poll loop would add nothing.
public func waitForSignal(_ signals: [Int32]) throws(SystemError) -> Int32 {
    var set = sigset_t()
    sigemptyset(&set)
    for signal in signals { sigaddset(&set, signal) }
    return try syscall("sigwaitinfo") { sigwaitinfo(&set, nil) }
}
