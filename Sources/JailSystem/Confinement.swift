import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// What a process gives up for good (CJail/harden.c): capabilities from its bounding set,
// system calls (seccomp), file-system reach and scopes (Landlock). Each holds for the process
// and everything it forks; a failure is the caller's to refuse, as these are security controls.

/// Drops every capability not in `mask` (bit N: capability N) from the bounding set, and
/// clears the inheritable and ambient sets (prctl(PR_CAPBSET_DROP)).
public func dropBoundingSet(keeping mask: UInt64) throws(SystemError) {
    try syscall("prctl(PR_CAPBSET_DROP)") { cj_drop_bounding_set(mask) }
}

/// The jail's seccomp filter (init, helpers, programs): `allowAio` lets io_setup/io_submit
/// through, `allowSetns` setns for the helpers that join an `--init` payload.
public func installJailSeccompFilter(allowAio: Bool, allowSetns: Bool) throws(SystemError) {
    try syscall("seccomp") { cj_install_seccomp(allowAio ? 1 : 0, allowSetns ? 1 : 0) }
}

/// The payload's seccomp filter (docs/security.md, "The payload's profile").
public func installPayloadSeccompFilter(allowAio: Bool) throws(SystemError) {
    try syscall("seccomp") { cj_install_payload_seccomp(allowAio ? 1 : 0) }
}

/// The kernel's Landlock ABI version, nil without Landlock (ENOSYS, EOPNOTSUPP).
public func landlockABI() -> Int32? {
    let abi = cj_landlock_abi()
    return abi >= 1 ? abi : nil
}

/// A Landlock domain with the scopes only (ABI 6: abstract unix sockets and signals) and no
/// file-system rules, so that mounts stay possible.
public func restrictToLandlockScope() throws(SystemError) {
    try syscall("landlock_restrict_self (scopes)") { cj_landlock_scope() }
}

/// A Landlock domain limiting file-system access to what is beneath `root`, for every access
/// right of `abi`; with ABI 6 also scoped for abstract unix sockets and signals.
public func restrictFileSystem(beneath root: FileDescriptor, abi: Int32) throws(SystemError) {
    try syscall("landlock_restrict_self") { cj_landlock_restrict_beneath(root.rawValue, abi) }
}
