import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A pty pair from the jail's own devpts instance. The slave becomes the program's terminal;
/// the master goes to the client (Session+Relay.swift), which relays it to its own terminal.
/// No host terminal ever reaches the jail.
struct PTY {
    let master: FileDescriptor
    let slave: FileDescriptor
    let slavePath: String

    /// Opens a pair, gives the slave to the user (group tty if the jail has one, as login
    /// does), and applies the client's terminal modes and size.
    init(owner: Account, ttyGroup: UInt32?, modes: TerminalModes, size: WindowSize) throws(SystemError) {
        var name = [CChar](repeating: 0, count: 128)
        let masterFD = try syscall("open", path: "/dev/ptmx") { cj_open_pty_master(&name, name.count) }
        let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let slaveFD = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        if slaveFD < 0 {
            let error = SystemError.last("open", path: path)
            close(masterFD)
            throw error
        }
        master = FileDescriptor(rawValue: masterFD)
        slave = FileDescriptor(rawValue: slaveFD)
        slavePath = path
        do {
            try syscall("fchown", path: path) { fchown(slaveFD, owner.uid, ttyGroup ?? owner.gid) }
            try syscall("fchmod", path: path) { fchmod(slaveFD, 0o620) }
            try apply(modes)
            try resize(size)
        } catch {
            master.closeQuietly()
            slave.closeQuietly()
            throw error
        }
    }

    func apply(_ modes: TerminalModes) throws(SystemError) {
        var t = termios()
        try syscall("tcgetattr", path: slavePath) { tcgetattr(slave.rawValue, &t) }
        t.c_iflag = modes.inputFlags
        t.c_oflag = modes.outputFlags
        t.c_cflag = modes.controlFlags
        t.c_lflag = modes.localFlags
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            for (i, c) in modes.controlCharacters.prefix(cc.count).enumerated() { cc[i] = c }
        }
        cfsetispeed(&t, speed_t(modes.inputSpeed))
        cfsetospeed(&t, speed_t(modes.outputSpeed))
        try syscall("tcsetattr", path: slavePath) { tcsetattr(slave.rawValue, TCSANOW, &t) }
    }

    /// The size the client's terminal had at its hello; later changes the client makes on the
    /// master itself (TIOCSWINSZ, which sends SIGWINCH to the foreground group).
    func resize(_ size: WindowSize) throws(SystemError) {
        try syscall("ioctl(TIOCSWINSZ)", path: slavePath) { cj_set_window_size(master.rawValue, size.rows, size.columns) }
    }
}
