import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// init born in its cgroup (clone3 with CLONE_INTO_CGROUP, Linux 5.7) instead of moved there
/// by writes to `cgroup.procs`. A migration takes the kernel's cgroup_threadgroup_rwsem for
/// writing, and the first one after a quiet spell waits out an RCU grace period: 8–12 ms on
/// this HZ=250 kernel, most of a jail's start. A birth takes only the read side. Only where
/// the jail's cgroups are the unified hierarchy's alone (a v1 hierarchy, for a limit v2
/// cannot serve, still needs its moves: the old path).
extension Supervisor {
    /// Descriptors of `jail/NAME/init.scope`, where init is born, and with a cgroup namespace of
    /// `jail/NAME`, where init roots it (cj_enter_cgroup_namespace_rooted_at); nil: the moves.
    func openBirthCgroups(_ cgroups: JailCgroups?) -> (initScope: Int32, namespaceRoot: Int32?)? {
        guard let cgroups, let unified = cgroups.unifiedDirectory, cgroups.directories == [unified] else { return nil }
        let paths = ["\(unified)/init.scope"] + (configuration.cgroupNamespace ? [unified] : [])
        var fds: [Int32] = []
        for path in paths {
            let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd < 0 {
                log.debug("init is moved into its cgroup: cannot open \(path): \(Errno(rawValue: errno))")
                for f in fds { close(f) }
                return nil
            }
            fds.append(fd)
        }
        return (fds[0], fds.dropFirst().first)
    }

    /// After a clone into `init.scope`: its ids, "G", the port filter (if not attached before
    /// the clone); with a cgroup namespace, init's "N" (made; the short-lived child that made
    /// it has left `jail/NAME`, so the v2 controllers may be enabled there); init's OOM score
    /// and the v2 limits; "C". No process is moved.
    func settleBornInit(_ pid: pid_t, cgroups: JailCgroups?, channels: CloneChannels, range: UInt32?,
                        reaped: inout Bool) throws(JailError) {
        try prepare(init: pid, channels: channels, range: range)
        try tell(init: pid, .go, channels: channels, reaped: &reaped)
        if !cgroupsBeforeClone {
            try PortFilter.attach(configuration, jail: cgroupName, socket: location.socketPath, to: cgroups)
        }
        if configuration.cgroupNamespace { try awaitCgroupNamespace(pid, channels: channels, reaped: &reaped) }
        try joinCgroups(init: pid, cgroups: cgroups, channels: channels, reaped: &reaped) { () throws(JailError) in
            shieldFromOOMKiller(init: pid)
            try cgroups?.enableUnified()
        }
        try tell(init: pid, .cgroupsJoined, channels: channels, reaped: &reaped)
    }
}
