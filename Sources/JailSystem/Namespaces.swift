import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// unshare(2) and setns(2), which Glibc's Swift module does not export. The clone of a jail's
// init makes its namespaces elsewhere (raw, in the supervisor); these are the later steps.

/// unshare(2) of `flags` (CLONE_NEW…); `what` names them in the error.
public func unshareNamespaces(_ flags: Int32, _ what: String) throws(SystemError) {
    try syscall("unshare(\(what))") { cj_unshare(flags) }
}

/// setns(2) into the namespace of `namespace` (a /proc/PID/ns file), of type `type`
/// (CLONE_NEW…); `name` names it in the error.
public func enterNamespace(_ namespace: Int32, type: Int32, name: String) throws(SystemError) {
    try syscall("setns", path: name) { cj_setns(namespace, type) }
}
