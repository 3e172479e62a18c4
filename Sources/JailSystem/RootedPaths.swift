import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// Paths of a tree that another party controls (a jail's root, a base), resolved inside it:
// openat2(2) with RESOLVE_IN_ROOT, so a symlink on the way is taken as the tree's own root
// would take it and never leads out. `name` is the path the errors show (the host's view).

/// Opens `path` inside the tree of `root` (close-on-exec always).
public func openInRoot(_ path: String, root: FileDescriptor, _ flags: Int32, name: String) throws(SystemError) -> FileDescriptor {
    FileDescriptor(rawValue: try syscall("open", path: name) { cj_open_in_root(root.rawValue, path, flags) })
}

/// The status of `path` itself inside the tree of `root` (an O_PATH open that does not follow
/// its last component, then fstat); nil when nothing is there.
public func statusInRoot(_ path: String, root: FileDescriptor, name: String) throws(SystemError) -> stat? {
    let handle: FileDescriptor
    do { handle = try openInRoot(path, root: root, CJ_O_PATH | O_NOFOLLOW, name: name) } catch {
        if error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory { return nil }
        throw error
    }
    defer { closeDescriptor(handle.rawValue) }
    do { return try handle.fileStatus() } catch { throw SystemError("fstat", path: name, errno: error.errno) }
}
