import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A started program and the descriptors its helper relays.
struct Session {
    let pid: pid_t
    /// Terminal mode: the pty master (the slave was given to the program).
    let pty: PTY?
    /// A relayed stdin: the write end of the program's stdin pipe.
    var input: FileDescriptor?
    /// Relayed stdout/stderr: the read ends, with their stream numbers.
    var outputs: [(stream: UInt8, fd: FileDescriptor)]
    /// Who the program runs as: the jail's user, or root inside for `jaild enter --root`.
    var account: Account?

    /// Resolves the account from the jail's own files, prepares stdio and spawns the program.
    static func start(hello: Hello, passed: [Int32], configuration: JailConfiguration) throws(SessionError) -> Session {
        let (account, ttyGroup) = try resolveAccount(configuration, root: hello.root)

        switch hello.mode {
        case .terminal(let modes, let size):
            guard passed.isEmpty else { throw .refused("descriptors are not accepted in terminal mode") }
            let pty: PTY
            do { pty = try PTY(owner: account, ttyGroup: ttyGroup, modes: modes, size: size) } catch {
                if error.errno == .noSpace {
                    throw .refused("no pty left in the jail: all \(configuration.maxPtys) of its ptys are in use")
                }
                throw .system(error)
            }
            let command = SessionCommand(account: account, hello: hello, terminal: pty.slavePath,
                                         policy: configuration.environmentPolicy)
            let slave = pty.slave.rawValue
            let request = SpawnRequest(command: command, account: account, stdio: [slave, slave, slave], controllingTerminal: true)
            let pid: pid_t
            do { pid = try spawn(request) } catch {
                pty.master.closeQuietly()
                pty.slave.closeQuietly()
                throw .refused(error.description)
            }
            // Only the program may hold the slave: when it and its children are gone, the
            // master reads EIO, which is how the relay knows the output is complete.
            pty.slave.closeQuietly()
            cj_set_proctitle("jaild: [\(pid)] \(pty.slavePath)")
            return Session(pid: pid, pty: pty, input: nil, outputs: [], account: account)

        case .stdio(let passedSet):
            guard passed.count == passedSet.count else {
                throw .refused("expected \(passedSet.count) descriptors, got \(passed.count)")
            }
            try checkPassable(passed)
            var stdio: [Int32] = []
            var childEnds: [Int32] = []
            var session = Session(pid: 0, pty: nil, input: nil, outputs: [])
            var next = 0
            for stream in 0..<3 {
                if passedSet.contains(stream: stream) {
                    stdio.append(passed[next])
                    next += 1
                    continue
                }
                var ends: [Int32] = [0, 0]
                do { try syscall("pipe2") { cj_pipe(&ends) } } catch { throw .system(error) }
                if stream == 0 {
                    stdio.append(ends[0])
                    childEnds.append(ends[0])
                    session.input = FileDescriptor(rawValue: ends[1])
                } else {
                    stdio.append(ends[1])
                    childEnds.append(ends[1])
                    session.outputs.append((UInt8(stream), FileDescriptor(rawValue: ends[0])))
                }
            }
            let command = SessionCommand(account: account, hello: hello, terminal: nil,
                                         policy: configuration.environmentPolicy)
            let request = SpawnRequest(command: command, account: account, stdio: stdio, controllingTerminal: false)
            defer { for fd in childEnds { close(fd) } }
            let pid: pid_t
            do { pid = try spawn(request) } catch { throw .refused(error.description) }
            cj_set_proctitle("jaild: [\(pid)] stdio")
            return Session(pid: pid, pty: nil, input: session.input, outputs: session.outputs, account: account)
        }
    }

    /// The jail user from the jail's own files, read for each session (they may change), and
    /// the group that owns its pty.
    static func resolveAccount(_ configuration: JailConfiguration, root: Bool = false) throws(SessionError) -> (Account, ttyGroup: UInt32?) {
        do {
            let passwd = String(decoding: try readFile("/etc/passwd"), as: UTF8.self)
            let group = String(decoding: (try? readFile("/etc/group")) ?? [], as: UTF8.self)
            let account = root ? Account.root(passwd: passwd) : try Account.resolve(configuration, passwd: passwd, group: group)
            // Rootless, the jail's tty group is not mapped: the slave goes to the user's group.
            let ttyGroup = configuration.rootless ? nil : GroupEntry.parseAll(group).first { $0.name == "tty" }?.gid
            return (account, ttyGroup)
        } catch {
            throw .refused("cannot resolve the jail user: \(error)")
        }
    }

    /// Descriptors from the client become the program's stdio. A directory would be a way out
    /// of the root (fchdir), and a terminal would let the program type into the host's
    /// terminal (TIOCSTI): both are refused.
    static func checkPassable(_ fds: [Int32]) throws(SessionError) {
        for fd in fds {
            var info = stat()
            guard fstat(fd, &info) == 0 else { throw .system(.last("fstat")) }
            if isDirectory(info) { throw .refused("a directory cannot be a session's stdio") }
            if isatty(fd) == 1 { throw .refused("a terminal cannot be passed into the jail; it must be relayed") }
            // CJ_O_PATH descriptors cannot be read or written; they only name a file.
            if fcntl(fd, F_GETFL) & CJ_O_PATH != 0 { throw .refused("an CJ_O_PATH descriptor cannot be a session's stdio") }
        }
    }
}
