#if canImport(Glibc)
import Glibc
#endif

/// Writes a kernel setting in one write(2), as /proc and /sys files want it (uid_map,
/// gid_map and setgroups of a process, its oom_score_adj, a cgroup's files): the kernel
/// takes or refuses the whole text at once.
public func writeKernelFile(_ path: String, _ text: String) throws(SystemError) {
    let fd = try syscall("open", path: path) { open(path, O_WRONLY | O_CLOEXEC) }
    defer { _ = close(fd) }
    let bytes = Array(text.utf8)
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    if n < 0 { throw SystemError.last("write", path: path) }
    if n != bytes.count { throw SystemError("write", path: path, errno: .ioError) }
}
