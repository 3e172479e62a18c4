import JailProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The client's terminal in raw mode, restored on every way out: normal exit, error and
/// signals (which jail reads from a signalfd, so it always gets to restore before dying).
public struct TerminalGuard {
    let fd: Int32
    let saved: termios

    /// Puts `fd` in raw mode; returns the modes it had, for the jail's pty.
    public init?(fd: Int32) {
        var original = termios()
        guard tcgetattr(fd, &original) == 0 else { return nil }
        self.fd = fd
        saved = original
        var raw = original
        cfmakeraw(&raw)
        // TCSADRAIN, as ssh does: keys typed before the session started are kept, not dropped.
        tcsetattr(fd, TCSADRAIN, &raw)
    }

    /// The modes `fd` has now, for the hello; nil if it is not a terminal.
    public static func modes(of fd: Int32) -> TerminalModes? {
        var t = termios()
        guard tcgetattr(fd, &t) == 0 else { return nil }
        return modes(t)
    }

    public var originalModes: TerminalModes { Self.modes(saved) }

    static func modes(_ saved: termios) -> TerminalModes {
        var t = saved
        let cc = withUnsafeBytes(of: &t.c_cc) { Array($0) }
        return TerminalModes(
            inputFlags: t.c_iflag, outputFlags: t.c_oflag, controlFlags: t.c_cflag, localFlags: t.c_lflag,
            controlCharacters: cc, inputSpeed: UInt32(cfgetispeed(&t)), outputSpeed: UInt32(cfgetospeed(&t)))
    }

    public func restore() {
        var t = saved
        tcsetattr(fd, TCSADRAIN, &t)
    }
}
