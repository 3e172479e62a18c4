import JailSystem

/// A daemon holds none of its caller's descriptors (sshd and systemd close them too): a jail
/// lives for weeks, and whatever jaild inherited would live as long in its supervisor. Found
/// with `flock /tmp/lock jaild …`, whose lock stayed held by the daemonized supervisor for the
/// jail's whole life, and with a pipe passed to jaild, whose reader never saw EOF. Only 0, 1
/// and 2 are the caller's to give: the supervisor points them at /dev/null or its log itself.
public enum InheritedDescriptors {
    /// Closes every descriptor from 3 up. Called first thing on every path that may start or
    /// adopt a jail, before jaild opens anything of its own (so everything from 3 up is the
    /// caller's): close_range(2), one system call however many there are.
    public static func closeAll() {
        closeDescriptors(keeping: [])
    }
}
