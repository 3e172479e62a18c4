import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The descriptors that came with the `terminal` frame, checked before the client touches
/// them: exactly one, and it must be a pty master (a character device that answers TIOCGPTN;
/// a pty slave does not). The client reads and writes it and resizes it, nothing else; a
/// server that passed anything else (a pipe, /dev/null, a file, a slave, two descriptors)
/// gets no byte of the terminal, and every descriptor it passed is closed.
enum PassedMaster {
    static func check(_ fds: [Int32]) throws(ClientError) -> FileDescriptor {
        guard fds.count == 1, let fd = fds.first else {
            for fd in fds { close(fd) }
            throw .refused("the session's terminal frame carried \(fds.count) descriptors, not one pty master")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFCHR, cj_pty_number(fd) >= 0 else {
            let kind = DescriptorKind.of(fd).description
            close(fd)
            throw .refused("the session's terminal frame carried \(kind), not a pty master")
        }
        return FileDescriptor(rawValue: fd)
    }
}
