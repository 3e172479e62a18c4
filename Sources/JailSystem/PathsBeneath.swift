import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Opens `path` inside `directory`, taken as the root (openat2 with RESOLVE_IN_ROOT), without
/// following any symlink or magic link on the way (close-on-exec): a link there fails with
/// ELOOP, so a tree another party controls cannot redirect the open. `name` names it in the error.
public func openBeneathWithoutSymlinks(_ path: String, in directory: FileDescriptor, _ flags: Int32,
                                       name: String) throws(SystemError) -> FileDescriptor {
    FileDescriptor(rawValue: try syscall("openat2", path: name) { cj_open_beneath_no_symlinks(directory.rawValue, path, flags) })
}
