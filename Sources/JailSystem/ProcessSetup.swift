import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// What a jaild process sets about itself after a fork (init's relays, the payload's keeper,
// session helpers): its title, the descriptors it keeps, its signals, its ids, its link to its
// parent. Not for the steps between a fork and an exec, which stay async-signal-safe C.

/// fork(2) of a single-threaded process (init, its helpers): 0 in the child, its pid in the parent.
public func forkProcess() throws(SystemError) -> pid_t {
    let pid = fork()
    if pid < 0 { throw SystemError.last("fork") }
    return pid
}

/// What `ps` shows for this process (the argv area) and its comm name.
public func setProcessTitle(_ title: String) {
    cj_set_proctitle(title)
}

/// Closes every descriptor from 3 up but `keep` (close_range(2)): a process forked to do one
/// thing holds nothing else of its parent's.
public func closeDescriptors(keeping keep: [Int32] = []) {
    keep.withUnsafeBufferPointer { cj_close_all_except(3, $0.baseAddress, Int32($0.count)) }
}

/// Unblocks every signal and gives each its default action: a child of a process that blocks
/// its signals for a signalfd (init) dies of SIGTERM again.
public func resetSignalHandling() {
    cj_reset_signals()
}

/// prctl(PR_SET_PDEATHSIG): `signal` comes to this process when the thread that forked it ends.
public func setParentDeathSignal(_ signal: Int32) throws(SystemError) {
    try syscall("prctl(PR_SET_PDEATHSIG)") { cj_set_parent_death_signal(signal) }
}

/// prctl(PR_SET_DUMPABLE): a non-dumpable process has no core dump, its /proc files are host
/// root's and no one may ptrace-attach it.
public func setDumpable(_ dumpable: Bool) throws(SystemError) {
    try syscall("prctl(PR_SET_DUMPABLE, \(dumpable ? 1 : 0))") { cj_set_dumpable(dumpable ? 1 : 0) }
}

/// No supplementary groups, then gid and uid (real, effective and saved, as root sets them):
/// the process is that user from now on.
public func becomeUser(uid: uid_t, gid: gid_t) throws(SystemError) {
    try syscall("setgroups") { setgroups(0, nil) }
    try syscall("setgid", path: "\(gid)") { setgid(gid) }
    try syscall("setuid", path: "\(uid)") { setuid(uid) }
}
