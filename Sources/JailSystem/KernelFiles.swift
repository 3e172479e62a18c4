import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `writeKernelFile` on a kernel file already open, such as a `cgroup.procs` the supervisor
/// opened before the jail's namespaces hid it, or /proc/self/loginuid: one write(2) of the
/// whole value, as those files require. `path` names it in the error.
public func writeKernelFile(_ descriptor: FileDescriptor, _ text: String, path: String) throws(SystemError) {
    let bytes = Array(text.utf8)
    let written = try syscall("write", path: path) { bytes.withUnsafeBytes { Glibc.write(descriptor.rawValue, $0.baseAddress, $0.count) } }
    // A kernel file takes the value whole or refuses it: a short count is a refusal too.
    if written != bytes.count { throw SystemError("write", path: path, errno: .ioError) }
}
