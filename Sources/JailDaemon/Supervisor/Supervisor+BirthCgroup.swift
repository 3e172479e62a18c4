import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// init born in its cgroup (clone3 with CLONE_INTO_CGROUP, Linux 5.7) instead of moved there
/// by a write to `cgroup.procs`. The first such write after a quiet spell waits out an RCU
/// grace period (the kernel's cgroup_threadgroup_rwsem), 8–12 ms on this HZ=250 kernel: most
/// of a jail's start. Only where the jail's cgroups are the unified hierarchy's alone (a v1
/// hierarchy, for a limit v2 cannot serve, still needs its move).
extension Supervisor {
    /// A descriptor of the cgroup init is born in: `jail/NAME` with a cgroup namespace (which
    /// clone3 roots there, CLONE_NEWCGROUP), else `jail/NAME/init.scope`; nil for the moves.
    func openBirthCgroup(_ cgroups: JailCgroups?) -> Int32? {
        guard let cgroups, let unified = cgroups.unifiedDirectory, cgroups.directories == [unified] else { return nil }
        let path = configuration.cgroupNamespace ? unified : "\(unified)/init.scope"
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            log.debug("init is moved into its cgroup: cannot open \(path): \(Errno(rawValue: errno))")
            return nil
        }
        return fd
    }

    /// After a clone into `jail/NAME` with its cgroup namespace: the move on to `init.scope`
    /// runs in a child started at once, so that its grace period passes while init gets its
    /// ids and mounts; then the port filter (if not attached before the clone), init's OOM
    /// score and the v2 limits, and "C". Without a namespace init was born in `init.scope`:
    /// no move at all.
    func settleBornInit(_ pid: pid_t, cgroups: JailCgroups?, channels: CloneChannels, range: UInt32?,
                        reaped: inout Bool) throws(JailError) {
        let scope = cgroups?.unifiedDirectory.map { "\($0)/init.scope/cgroup.procs" }
        var mover: pid_t = 0
        if configuration.cgroupNamespace, let scope {
            mover = cj_write_in_child(scope, "\(pid)")
            if mover < 0 { throw .system(.last("fork (the move into init.scope)", path: scope)) }
        }
        defer { if mover > 0 { Self.exitCode(of: mover) } }
        try prepare(init: pid, channels: channels, range: range)
        LifelineWord.go.send(on: channels.lifeline.write)
        if !cgroupsBeforeClone {
            try PortFilter.attach(configuration, jail: cgroupName, socket: location.socketPath, to: cgroups)
        }
        try joinCgroups(init: pid, cgroups: cgroups, channels: channels, reaped: &reaped) { () throws(JailError) in
            if mover > 0 {
                let code = Self.exitCode(of: mover)
                mover = 0
                if code != 0 { throw .system(SystemError("write", path: scope, errno: Errno(rawValue: code))) }
            }
            shieldFromOOMKiller(init: pid)
            try cgroups?.enableUnified()
        }
        LifelineWord.cgroupsJoined.send(on: channels.lifeline.write)
    }

    /// The exit status of a child of cj_write_in_child: 0, or the errno of its write.
    @discardableResult
    static func exitCode(of child: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 {
            if errno != EINTR { return Errno.noSuchProcess.rawValue }
        }
        return cj_status_to_code(status)
    }
}
