import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// jaild's own file must never be writable from a jail (CVE-2019-5736): a session whose shell
/// is /proc/self/exe runs jaild again, as the jail user and dumpable, and /proc/PID/exe of it
/// is then the executable of the supervisor, init and helpers. A root jaild therefore runs
/// from a read-only, detached bind mount of itself (CJail/selfexec.c): the same file, but
/// every path to it from the jail refuses writes, chown and chmod with EROFS.
public enum ProtectedBinary {
    /// Re-executes jaild from the read-only mount unless it already runs from one. Rootless,
    /// the jail's user could change only a jaild it owns anyway: nothing to do.
    public static func reexecIfNeeded() {
        guard geteuid() == 0, cj_executable_is_read_only() == 0 else { return }
        _ = cj_reexec_read_only(CommandLine.unsafeArgv, environ)
        log.warning("cannot run jaild from a read-only mount of itself (\(Errno(rawValue: errno))): root in the jail could change jaild's file through /proc/PID/exe")
    }
}
