import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A started program and the descriptors its helper relays or hands over.
struct Session {
    let pid: pid_t
    /// Terminal mode: the pty (the slave was given to the program, the master is for the
    /// client).
    let pty: PTY?
    /// A relayed stdin: the write end of the program's stdin pipe.
    var input: FileDescriptor?
    /// Relayed stdout/stderr: the read ends, with their stream numbers.
    var outputs: [(stream: UInt8, fd: FileDescriptor)]
    /// Who the program runs as: the jail's user, or root inside for `jaild enter --root`.
    var account: Account?

    /// Resolves the account from the jail's own files, prepares stdio and spawns the program.
    /// `prepare`: the helper's own variables for this account (forwarding), set up once the
    /// account is known and before the program starts.
    static func start(hello: Hello, passed: [Int32], configuration: JailConfiguration, settings: ProgramSettings,
                      prepare: (Account) -> [String] = { _ in [] }) throws(SessionError) -> Session {
        let (account, ttyGroup) = try resolveAccount(configuration, root: hello.root)
        let extra = prepare(account)
        switch hello.mode {
        case .terminal(let modes, let size):
            guard passed.isEmpty else { throw .refused("descriptors are not accepted in terminal mode") }
            return try startTerminal(hello: hello, account: account, ttyGroup: ttyGroup, modes: modes, size: size,
                                     configuration: configuration, settings: settings, extra: extra)
        case .stdio(let passedSet, let null, let joined):
            guard passed.count == passedSet.count else {
                throw .refused("expected \(passedSet.count) descriptors, got \(passed.count)")
            }
            try checkPassable(passed)
            var plumbing = try StdioPlumbing(passed: passed, passedSet: passedSet, null: null, stderrJoinsStdout: joined)
            defer { plumbing.closeChildEnds() }
            let command = SessionCommand(account: account, hello: hello, terminal: nil,
                                         policy: configuration.environmentPolicy, extra: extra)
            let request = SpawnRequest(command: command, account: account, stdio: plumbing.stdio, controllingTerminal: false)
            let pid: pid_t
            do { pid = try spawn(request, settings: settings) } catch {
                plumbing.closeRelayEnds()
                throw .refused(error.description)
            }
            setProcessTitle("jaild: [\(pid)] stdio")
            return Session(pid: pid, pty: nil, input: plumbing.input, outputs: plumbing.outputs, account: account)
        }
    }

    /// A pty of the jail's own devpts; the slave becomes the program's controlling terminal.
    static func startTerminal(hello: Hello, account: Account, ttyGroup: UInt32?, modes: TerminalModes, size: WindowSize,
                              configuration: JailConfiguration, settings: ProgramSettings,
                              extra: [String]) throws(SessionError) -> Session {
        let pty: PTY
        do { pty = try PTY(owner: account, ttyGroup: ttyGroup, modes: modes, size: size) } catch {
            if error.errno == .noSpace {
                throw .refused("no pty left in the jail: all \(configuration.maxPtys) of its ptys are in use")
            }
            throw .system(error)
        }
        let command = SessionCommand(account: account, hello: hello, terminal: pty.slavePath,
                                     policy: configuration.environmentPolicy, extra: extra)
        let slave = pty.slave.rawValue
        let request = SpawnRequest(command: command, account: account, stdio: [slave, slave, slave], controllingTerminal: true)
        let pid: pid_t
        do { pid = try spawn(request, settings: settings) } catch {
            pty.master.closeQuietly()
            pty.slave.closeQuietly()
            throw .refused(error.description)
        }
        // Only the program may hold the slave: when it and its children are gone, the
        // master reads EIO, which is how the client knows the output is complete.
        pty.slave.closeQuietly()
        setProcessTitle("jaild: [\(pid)] \(pty.slavePath)")
        return Session(pid: pid, pty: pty, input: nil, outputs: [], account: account)
    }

    /// The jail user from the jail's own files, read for each session (they may change), and
    /// the group that owns its pty.
    static func resolveAccount(_ configuration: JailConfiguration, root: Bool = false) throws(SessionError) -> (Account, ttyGroup: UInt32?) {
        do {
            let passwd = String(decoding: try readUntrustedFile("/etc/passwd"), as: UTF8.self)
            // No /etc/group: no groups, as getgrouplist would find; any other failure (a FIFO put
            // there, a file too large) refuses the session instead of running it with fewer groups.
            let groupBytes: [UInt8]
            do { groupBytes = try readUntrustedFile("/etc/group") } catch {
                guard error.isMissing else { throw error }
                groupBytes = []
            }
            let group = String(decoding: groupBytes, as: UTF8.self)
            let account = root ? Account.root(passwd: passwd) : try Account.resolve(configuration, passwd: passwd, group: group)
            // Rootless, the jail's tty group is not mapped: the slave goes to the user's group.
            let ttyGroup = configuration.rootless ? nil : GroupEntry.parseAll(group).first { $0.name == "tty" }?.gid
            return (account, ttyGroup)
        } catch {
            throw .refused("cannot resolve the jail user: \(error)")
        }
    }

    /// Descriptors from the client become the program's stdio, so they must be nothing but a
    /// way to move bytes: an anonymous pipe or a unix socket. Whatever the client is (a
    /// modified one may be root), a file, a device (even /dev/null), a named FIFO, an inet
    /// socket, a directory or a terminal is refused here: through a host object root inside
    /// could fchmod/fchown it, re-open it for writing through /proc/self/fd, bind an inet
    /// socket to a port, fchdir out of the root or type into the host's terminal. The client
    /// relays those kinds instead (docs/security.md).
    static func checkPassable(_ fds: [Int32]) throws(SessionError) {
        for fd in fds {
            let kind = DescriptorKind.of(fd)
            guard kind.isPassable else {
                throw .refused("\(kind.description) cannot be passed into the jail: only pipes and unix sockets are, the rest is relayed")
            }
        }
    }
}

/// The stdio of a stdio session: which descriptors the program gets as 0, 1 and 2 (passed
/// ones, the jail's /dev/null, or pipe ends), and the helper's ends of the relayed pipes.
struct StdioPlumbing {
    var stdio: [Int32] = []
    /// Descriptors made here for the program: closed in the helper once it is spawned.
    var childEnds: [Int32] = []
    /// A relayed stdin: the write end of the program's stdin pipe.
    var input: FileDescriptor?
    /// Relayed stdout/stderr: the read ends, with their stream numbers.
    var outputs: [(stream: UInt8, fd: FileDescriptor)] = []

    init(passed: [Int32], passedSet: StdioSet, null: StdioSet, stderrJoinsStdout: Bool) throws(SessionError) {
        var next = 0
        do throws(SystemError) {
            for stream in 0..<3 {
                if passedSet.contains(stream: stream) {
                    stdio.append(passed[next])
                    next += 1
                } else if null.contains(stream: stream) {
                    // The jail's own /dev/null, never the host's (root inside could fchmod it).
                    let fd = try openFile("/dev/null", O_RDWR).rawValue
                    childEnds.append(fd)
                    stdio.append(fd)
                } else if stream == 2 && stderrJoinsStdout {
                    // `2>&1` on the client: one pipe keeps the order of stdout and stderr.
                    stdio.append(stdio[1])
                } else {
                    let pipe = try Pipe.make()
                    let (programEnd, helperEnd) = stream == 0 ? (pipe.read, pipe.write) : (pipe.write, pipe.read)
                    childEnds.append(programEnd.rawValue)
                    stdio.append(programEnd.rawValue)
                    if stream == 0 {
                        input = helperEnd
                    } else {
                        outputs.append((UInt8(stream), helperEnd))
                    }
                }
            }
        } catch {
            closeChildEnds()
            closeRelayEnds()
            throw .system(error)
        }
    }

    mutating func closeChildEnds() {
        for fd in childEnds { closeDescriptor(fd) }
        childEnds = []
    }

    func closeRelayEnds() {
        input?.closeQuietly()
        for output in outputs { output.fd.closeQuietly() }
    }
}
