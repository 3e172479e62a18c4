import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Mounts made detached (open_tree, fsopen/fsmount: CJail/files.c), attached later by their
// descriptor: nothing appears in any mount namespace until then.

/// open_tree(OPEN_TREE_CLONE|AT_RECURSIVE): a detached copy of the tree at `path`.
public func openDetachedTree(_ path: String) throws(SystemError) -> FileDescriptor {
    FileDescriptor(rawValue: try syscall("open_tree", path: path) { cj_open_detached_tree(path) })
}

/// A detached overlay of `lower`, `upper` and `work` (paths): its root's descriptor. `name`
/// names it in the error.
public func openDetachedOverlay(lower: String, upper: String, work: String, name: String) throws(SystemError) -> FileDescriptor {
    FileDescriptor(rawValue: try syscall("overlay", path: name) { cj_overlay_open(lower, upper, work) })
}

/// A detached, read-only overlay of the `upper/` of `state` over `lower` (both as lower
/// layers, so that nothing is written). `name` names it in the error.
public func openDetachedReadOnlyOverlay(state: FileDescriptor, lower: FileDescriptor, name: String) throws(SystemError) -> FileDescriptor {
    FileDescriptor(rawValue: try syscall("overlay", path: name) { cj_overlay_open_read_only(state.rawValue, lower.rawValue) })
}

/// Binds the host's files `sources[i]` over `targets[i]` (read-only, nosuid, nodev) in the
/// mount namespace of `namespace` (a /proc/PID/ns/mnt), each stale mount there detached first.
/// Host root, single-threaded caller (a child joins the namespace). `name` names it in the error.
public func bindInNamespace(_ namespace: FileDescriptor, sources: [String], targets: [String],
                            name: String) throws(SystemError) {
    let rc = withCStringArray(sources) { sourcePointers in
        withCStringArray(targets) { targetPointers in
            cj_rebind_in_namespace(namespace.rawValue, sourcePointers, targetPointers, Int32(sources.count))
        }
    }
    if rc != 0 { throw SystemError.last("bind", path: name) }
}
