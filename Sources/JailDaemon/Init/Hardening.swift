import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The defences init puts on itself once the jail's file system is ready, inherited by every
/// helper and session program: a reduced capability bounding set, a seccomp filter, and a
/// Landlock scope. docs/security.md explains each choice.
enum Hardening {
    /// What root inside a jail commonly needs and what cannot reach the host: file ownership
    /// and modes, switching users (su, sshd), signalling its own processes, binding low ports
    /// of the shared network, chroot (sshd privilege separation), audit writes (login, sshd).
    /// Everything else (SYS_ADMIN, NET_ADMIN, NET_RAW, MKNOD, SYS_PTRACE, SYS_MODULE, SYS_TIME,
    /// SYS_BOOT, DAC_READ_SEARCH, SYSLOG, …) is gone from the bounding set.
    static let keptCapabilities: [(name: String, number: Int)] = [
        ("CHOWN", 0), ("DAC_OVERRIDE", 1), ("FOWNER", 3), ("FSETID", 4), ("KILL", 5), ("SETGID", 6),
        ("SETUID", 7), ("SETPCAP", 8), ("NET_BIND_SERVICE", 10), ("SYS_CHROOT", 18), ("AUDIT_WRITE", 29),
    ]

    static var keptMask: UInt64 { keptCapabilities.reduce(0) { $0 | (1 << UInt64($1.number)) } }

    /// No core dumps, no /proc/PID/fd, mem or environ for the jail's root, no ptrace attach:
    /// what keeps init's and the helpers' host-facing descriptors out of the jail's reach.
    /// A process that cannot have it must not go on (it is a security control).
    static func forbidDumps() throws(SystemError) {
        try setDumpable(false)
    }

    /// Landlock ABI 6 (Linux 6.12) brought the scopes for abstract unix sockets and signals.
    static let scopeABI: Int32 = 6

    /// `extraCapabilities`: `--cap` grants outside the default set stay in the bounding set.
    /// `allowAio`: `--allow-aio` lets io_setup/io_submit through the seccomp filter.
    /// `allowSetns`: with `--init`, the session helpers join the payload's namespaces.
    static func apply(extraCapabilities: [Int], allowAio: Bool, allowSetns: Bool = false) throws(JailError) {
        try restrictFileSystemAndScope()
        do throws(SystemError) {
            try dropBoundingSet(keeping: keptMask | Capability.mask(extraCapabilities))
            try installJailSeccompFilter(allowAio: allowAio, allowSetns: allowSetns)
        } catch { throw .system(error) }
    }

    /// One Landlock domain (any ABI ≥ 1, Linux 5.13+): file-system access only beneath the
    /// jail's root, so a descriptor of the host's tree passed into the jail (over a unix socket
    /// a host process connected to) opens nothing; with ABI 6 also the scopes. Older kernels
    /// get a warning naming what is missing.
    static func restrictFileSystemAndScope() throws(JailError) {
        guard let abi = landlockABI() else {
            log.warning("this kernel has no Landlock: a host directory passed into the jail is usable there, and the host's abstract unix sockets are reachable")
            return
        }
        let root: FileDescriptor
        do { root = try openDirectoryPath("/") } catch { throw .system(error) }
        defer { root.closeQuietly() }
        do { try restrictFileSystem(beneath: root, abi: abi) } catch { throw .system(error) }
        if abi < scopeABI {
            log.warning("this kernel has no Landlock scoping (ABI \(abi), needs \(scopeABI)): the host's abstract unix sockets are reachable from the jail")
        }
    }
}
