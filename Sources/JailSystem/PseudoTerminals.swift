import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A new pty from the /dev/ptmx of the current root: the master (close-on-exec) and the
/// slave's path, which the caller opens.
public func openPseudoTerminal() throws(SystemError) -> (master: FileDescriptor, slavePath: String) {
    var name = [CChar](repeating: 0, count: 128)
    let master = try syscall("open", path: "/dev/ptmx") { cj_open_pty_master(&name, name.count) }
    let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return (FileDescriptor(rawValue: master), path)
}

extension FileDescriptor {
    /// ioctl(TIOCSWINSZ) on a pty master: the size the slave's programs see (its foreground
    /// group gets SIGWINCH). `path` names the terminal in the error.
    public func setWindowSize(rows: UInt16, columns: UInt16, path: String? = nil) throws(SystemError) {
        try syscall("ioctl(TIOCSWINSZ)", path: path) { cj_set_window_size(rawValue, rows, columns) }
    }
}
