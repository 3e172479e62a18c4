import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A new session helper's first step: into the jail's `sessions` cgroup, whose limits (memory
/// derived from `--memory`, and `--cpus`: CgroupLimits.sessionLimits) hold every tenant's
/// helper together. An operator's helper stays out (Init.forkHelper): those limits are the
/// tenant's to use up.
/// Pages the helper shares with init stay charged to init; what it allocates from now on,
/// its relay buffers above all, is charged here.
enum SessionCgroup {
    static func join(_ procs: [Int32]) {
        for fd in procs {
            do { try writeKernelFile(FileDescriptor(rawValue: fd), "0", path: "sessions/cgroup.procs") } catch {
                // The helper then stays in init's cgroup: a session still works, unbounded as before.
                log.warning("session helper cannot join its cgroup: \(error)")
            }
        }
    }
}
