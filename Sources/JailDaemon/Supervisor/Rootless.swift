import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// Jails for users without privileges: a user namespace, created with the others, maps the
/// user's own uid and gid (or 0 with --map-root) into the jail, and nothing else. What that
/// cannot give is refused here, before anything is created, with what to do instead.
public enum Rootless {
    public static var isRootless: Bool { geteuid() != 0 }

    /// The user's ids inside the jail.
    public static func insideIDs(mapRoot: Bool) -> (uid: UInt32, gid: UInt32) {
        mapRoot ? (0, 0) : (getuid(), getgid())
    }

    static func check(_ configuration: JailConfiguration) throws(JailError) {
        try checkUserNamespaces()
        let inside = insideIDs(mapRoot: configuration.mapRoot)
        guard configuration.uid == inside.uid else {
            throw .rootless("uid \(configuration.uid) inside needs root: a rootless jail maps only your own uid "
                + "(\(getuid()), or 0 with --map-root)")
        }
        if let gid = configuration.gid, gid != inside.gid {
            throw .rootless("gid \(gid) inside needs root: a rootless jail maps only your own gid (\(inside.gid))")
        }
        if !configuration.limits.controllers.isEmpty || configuration.ports != nil {
            throw .rootless("--memory, --pids, --cpus and --ports need root: cgroups are not delegated to "
                + "unprivileged users here (run jaild as root)")
        }
        if !configuration.capabilities.isEmpty {
            throw .rootless("--cap needs root: capabilities in a user namespace do not reach the host's network")
        }
    }

    /// Each way a host can turn user namespaces off, named, so the operator knows what to change.
    static func checkUserNamespaces() throws(JailError) {
        if let max = readNumber("/proc/sys/user/max_user_namespaces"), max == 0 {
            throw .rootless("user namespaces are disabled on this host: user.max_user_namespaces is 0 "
                + "(sysctl -w user.max_user_namespaces=15000, or run jaild as root)")
        }
        if let clone = readNumber("/proc/sys/kernel/unprivileged_userns_clone"), clone == 0 {
            throw .rootless("unprivileged user namespaces are disabled on this host: kernel.unprivileged_userns_clone "
                + "is 0 (sysctl -w kernel.unprivileged_userns_clone=1, or run jaild as root)")
        }
        if let apparmor = readNumber("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"), apparmor == 1 {
            throw .rootless("AppArmor restricts unprivileged user namespaces on this host: "
                + "kernel.apparmor_restrict_unprivileged_userns is 1 (allow jaild in an AppArmor profile, or run it as root)")
        }
    }
}
