import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// jaild's own file seen from a jail (CJail/selfexec.c): a root jaild runs from a read-only,
// detached bind mount of itself, so that /proc/PID/exe of any of its processes refuses writes.

/// Whether this process's executable is on a writable mount (statvfs of /proc/self/exe): false
/// on a read-only one, and when that cannot be told, where a remount could not be made either.
public func executableIsOnWritableMount() -> Bool {
    cj_executable_is_read_only() == 0
}

/// Maps this program's file again from a read-only detached mount of it (its written pages
/// copied) and makes that /proc/self/exe, without an exec. False when the kernel refused
/// (PR_SET_MM): some mappings may be the new ones already (equal content), and the caller
/// re-executes instead (`reexecFromReadOnlyMount`).
@discardableResult
public func remapFromReadOnlyMount() -> Bool {
    cj_remap_read_only() == 0
}

/// Re-executes this program, with its arguments and environment, from a read-only detached
/// bind mount of its own file (needs CAP_SYS_ADMIN). Returns only on failure, with it.
public func reexecFromReadOnlyMount() -> SystemError {
    _ = cj_reexec_read_only(CommandLine.unsafeArgv, environ)
    return SystemError.last("execve from a read-only mount", path: "/proc/self/exe")
}
