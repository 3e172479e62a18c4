#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// One inotify descriptor (non-blocking, close-on-exec) with an IN_MODIFY watch on each of
/// `files`: readable when any of them changed (cgroup event files, which the kernel notifies
/// as modified). Its events need not be parsed: the caller reads the files again.
public func watchModifications(of files: [String]) throws(SystemError) -> FileDescriptor {
    let fd = try syscall("inotify_init1") { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }
    for file in files where inotify_add_watch(fd, file, UInt32(IN_MODIFY)) < 0 {
        let error = SystemError.last("inotify_add_watch", path: file)
        closeDescriptor(fd)
        throw error
    }
    return FileDescriptor(rawValue: fd)
}
