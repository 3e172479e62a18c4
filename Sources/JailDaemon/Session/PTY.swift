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
        let (masterFD, path) = try openPseudoTerminal()
        master = masterFD
        do { slave = try openFile(path, O_RDWR | O_NOCTTY) } catch {
            master.closeQuietly()
            throw error
        }
        slavePath = path
        do {
            try slave.setOwner(uid: owner.uid, gid: ttyGroup ?? owner.gid, path: path)
            try slave.setMode(0o620, path: path)
            try apply(modes)
            try resize(size)
        } catch {
            master.closeQuietly()
            slave.closeQuietly()
            throw error
        }
    }

    func apply(_ modes: TerminalModes) throws(SystemError) {
        var t = try slave.terminalAttributes(path: slavePath)
        t.c_iflag = modes.inputFlags
        t.c_oflag = modes.outputFlags
        t.c_cflag = modes.controlFlags
        t.c_lflag = modes.localFlags
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            for (i, c) in modes.controlCharacters.prefix(cc.count).enumerated() { cc[i] = c }
        }
        t.setSpeeds(input: speed_t(modes.inputSpeed), output: speed_t(modes.outputSpeed))
        try slave.setTerminalAttributes(t, path: slavePath)
    }

    /// The size the client's terminal had at its hello; later changes the client makes on the
    /// master itself (TIOCSWINSZ, which sends SIGWINCH to the foreground group).
    func resize(_ size: WindowSize) throws(SystemError) {
        try master.setWindowSize(rows: size.rows, columns: size.columns, path: slavePath)
    }
}
