import CJail
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// A terminal's modes (termios) on a descriptor of it: a session's pty slave takes the
// client's modes this way.

extension FileDescriptor {
    /// tcgetattr(3); `path` names the terminal in the error.
    public func terminalAttributes(path: String? = nil) throws(SystemError) -> termios {
        var attributes = termios()
        try syscall("tcgetattr", path: path) { tcgetattr(rawValue, &attributes) }
        return attributes
    }

    /// tcsetattr(3) at once (TCSANOW); `path` names the terminal in the error.
    public func setTerminalAttributes(_ attributes: termios, path: String? = nil) throws(SystemError) {
        var attributes = attributes
        try syscall("tcsetattr", path: path) { tcsetattr(rawValue, TCSANOW, &attributes) }
    }
}

extension termios {
    /// The input and output line speeds (cfsetispeed(3), cfsetospeed(3)): the B* constants,
    /// which these calls only store, so they cannot fail for a speed the caller read from one.
    public mutating func setSpeeds(input: speed_t, output: speed_t) {
        _ = cfsetispeed(&self, input)
        _ = cfsetospeed(&self, output)
    }
}
