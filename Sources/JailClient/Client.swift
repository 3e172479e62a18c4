import CJail
import JailIO
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `jail`: connects to the jail of this uid and gid and runs a session in it.
///
/// stdin a terminal → pty mode: the terminal goes raw, its modes and size go to the jail's own
/// pty, whose master the session passes back; jail relays between its terminal and that
/// master and resizes it on SIGWINCH (ClientSession+Terminal.swift). Otherwise stdio mode, per
/// descriptor: pipes and unix sockets are passed to the session as they are (SCM_RIGHTS: exact
/// bytes and EOF at native speed, `cat file | jail -c …`, ssh's socketpairs); /dev/null (or a
/// closed descriptor) becomes the jail's own /dev/null; everything else — regular files,
/// devices, named FIFOs, inet sockets, terminals — is relayed as frames, so no host object
/// enters the jail (docs/security.md). The exit code is the program's; jail's own failures
/// are one line and 255.
public enum Client {
    /// `argv` and `rawEnvironment` as bytes (CommandLine.unsafeArgv, environ): they reach the
    /// jail unchanged. `environment` is the same environment as text, for jail's own lookups.
    public static func main(argv: [[UInt8]], environment: [String: String], rawEnvironment: [[UInt8]]) -> Never {
        let invocation = Invocation(argvBytes: argv)
        var session = ClientSession(invocation: invocation, environment: environment)
        session.rawEnvironment = rawEnvironment
        run(session, prefix: "jail")
    }

    /// `jaild enter`: root on the host opens a session in the jail served at `socket` (owned
    /// by the jail's uid `owner`), as the jail's user or, with `root`, as root inside. The
    /// command's words are quoted for the jail's shell; none gives a login shell.
    /// `control`: `socket` is the jail's root-only control socket (OperatorEntry), as for every
    /// jail started by root; else the jail's own socket, which admits root only without a user
    /// namespace.
    public static func enter(socket: String, control: Bool, owner: UInt32, root: Bool, command: [String],
                             environment: [String: String]) -> Never {
        let invocation = command.isEmpty ? Invocation(login: true, arguments: [])
            : Invocation(login: false, arguments: ["-c", command.map(shellQuoted).joined(separator: " ")])
        var session = ClientSession(invocation: invocation, environment: environment)
        session.target = (socket, owner, control)
        session.asRoot = root
        run(session, prefix: "jaild enter")
    }

    /// `'word'`, with each `'` as `'\''`: the jail's shell gets the words as they were given.
    public static func shellQuoted(_ word: String) -> String {
        "'" + word.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }

    static func run(_ initial: ClientSession, prefix: String) -> Never {
        _ = cj_ignore_signal(SIGPIPE)
        var session = initial
        do {
            let code = try session.run()
            session.terminal?.restore()
            exit(code)
        } catch {
            session.terminal?.restore()
            let line = Array("\(prefix): \(error)\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            exit(255)
        }
    }
}

struct ClientSession {
    let invocation: Invocation
    let environment: [String: String]
    var terminal: TerminalGuard?
    /// stdin is relayed and has not ended: read it and send it as frames.
    var stdinOpen = false
    /// stdout was passed: the session ends when its reader goes away.
    var watchStdoutHangup = false
    /// `jaild enter`: this socket (whose owner, the jail's uid, is trusted too) instead of
    /// the caller's own, and whether to ask for root inside.
    var target: (socket: String, owner: UInt32, control: Bool)?
    var asRoot = false
    /// environ as bytes, when the caller has it (`jail`); else the text environment is offered.
    var rawEnvironment: [[UInt8]]?

    init(invocation: Invocation, environment: [String: String]) {
        self.invocation = invocation
        self.environment = environment
    }

    /// One request line, one answer line (bounded by 10 s), before the hello.
    /// With the request goes an open descriptor of root's 0700 directory: what proves to init
    /// that the peer is host root (a user namespace shows every unmapped uid alike).
    static func askForOperatorSession(_ socket: FileDescriptor) throws(ClientError) {
        let path = OperatorEntry.proofDirectory
        let proof = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard proof >= 0 else { throw .system(.last("open", path: path)) }
        defer { close(proof) }
        do { _ = try UnixSocket.send(socket, OperatorEntry.request, passing: [proof]) } catch { throw .system(error) }
        var answer: [UInt8] = []
        var entry = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
        while answer.last != 10 && answer.count < 512 {
            guard poll(&entry, 1, 10_000) == 1 else { throw .refused("the jail's init did not answer on its control socket") }
            var byte: UInt8 = 0
            guard read(socket.rawValue, &byte, 1) == 1 else { throw .refused("the jail's init closed its control socket") }
            answer.append(byte)
        }
        if let reason = OperatorEntry.refusalReason(answer) { throw .refused("the jail's init refused the session: \(reason)") }
        guard answer == OperatorEntry.accepted else {
            let text = String(decoding: answer, as: UTF8.self).trimmingWhitespace()
            throw .refused("the jail's init refused the session: \(text.isEmpty ? "no answer" : String(text))")
        }
    }

    mutating func run() throws(ClientError) -> Int32 {
        let uid = getuid()
        let gid = getgid()
        let location = target.map { SocketLocation(socketPath: $0.socket) }
            ?? Invocation.socketLocation(environment: environment, uid: uid, gid: gid)
        let (hello, passing) = try Self.makeHello(invocation: invocation, environment: environment, root: asRoot,
                                                  rawEnvironment: rawEnvironment)
        let socket = try Connection.open(location, uid: uid, alsoTrusted: target?.owner)
        if target?.control == true { try Self.askForOperatorSession(socket) }
        let signals: SignalDescriptor
        do { signals = try SignalDescriptor([SIGWINCH, SIGTERM, SIGHUP, SIGINT, SIGQUIT]) } catch { throw .system(error) }

        let frame = FrameEncoder.encode(.hello(hello))
        do {
            let sent = try UnixSocket.send(socket, frame, passing: passing)
            if sent < frame.count { try socket.writeFully(Array(frame[sent...])) }
        } catch {
            // jaild may have refused us (too many sessions, wrong uid) and closed before our
            // hello went out: its reason is already queued on our side of the socket.
            if let reason = Self.queuedRefusal(socket) { throw .refused(reason) }
            throw .system(error)
        }
        begin(hello.mode)
        do { try socket.setNonBlocking(true) } catch { throw .system(error) }
        if terminal != nil { return try relayTerminal(FrameChannel(socket: socket), signals: signals) }
        return try relay(FrameChannel(socket: socket), signals: signals)
    }

    static func queuedRefusal(_ socket: FileDescriptor) -> String? {
        var channel = FrameChannel(socket: socket)
        guard let received = try? socket.readChunk(max: 64 << 10), !received.isEmpty else { return nil }
        channel.absorb(received)
        guard case .error(let reason)? = (try? channel.decodeBuffered())?.first else { return nil }
        return reason
    }

    /// Builds the hello and the descriptors that go with it; changes nothing.
    static func makeHello(invocation: Invocation, environment: [String: String],
                          root: Bool, rawEnvironment: [[UInt8]]? = nil) throws(ClientError) -> (Hello, [Int32]) {
        let offered = rawEnvironment.map { Invocation.offeredEnvironment(raw: $0) }
            ?? Invocation.offeredEnvironment(environment).map { Array($0.utf8) }
        let x11 = X11Offer.cookie(environment: environment)
        let offersAgent = !(environment["SSH_AUTH_SOCK"] ?? "").isEmpty
        if isatty(0) == 1, let modes = TerminalGuard.modes(of: 0) {
            var rows: UInt16 = 24
            var cols: UInt16 = 80
            _ = cj_get_window_size(0, &rows, &cols)
            let mode = Hello.Mode.terminal(modes, WindowSize(rows: rows, columns: cols))
            return (Hello(mode: mode, login: invocation.login, argumentBytes: invocation.argumentBytes, environmentBytes: offered,
                          root: root, x11: x11, offersAgent: offersAgent), [])
        }
        var passed = StdioSet()
        var null = StdioSet()
        var fds: [Int32] = []
        for fd: Int32 in 0...2 {
            let stream = StdioSet(rawValue: 1 << UInt8(fd))
            switch try route(DescriptorKind.of(fd)) {
            case .passed:
                passed.insert(stream)
                fds.append(fd)
            case .null: null.insert(stream)
            case .relayed: break
            }
        }
        let relayedOutputs = passed.union(null).isDisjoint(with: [.output, .error])
        let mode = Hello.Mode.stdio(passed: passed, null: null,
                                    stderrJoinsStdout: relayedOutputs && sameFile(1, 2))
        return (Hello(mode: mode, login: invocation.login, argumentBytes: invocation.argumentBytes, environmentBytes: offered,
                      root: root, x11: x11, offersAgent: offersAgent), fds)
    }

    enum Route { case passed, null, relayed }

    /// Only pipes and unix sockets enter the jail; /dev/null (or nothing) becomes the jail's
    /// own; every other kind is relayed, so the jail gets its bytes but never the object.
    static func route(_ kind: DescriptorKind) throws(ClientError) -> Route {
        switch kind {
        case .pipe, .unixSocket: return .passed
        case .null, .closed: return .null
        case .directory: throw .refused("a directory cannot be a session's stdio")
        case .pathOnly: throw .refused("an O_PATH descriptor cannot be a session's stdio")
        case .namedFIFO, .otherSocket, .terminal, .regularFile, .device: return .relayed
        }
    }

    /// `2>&1`: stdout and stderr are one file (and so one offset, or one terminal).
    static func sameFile(_ a: Int32, _ b: Int32) -> Bool {
        var x = stat()
        var y = stat()
        guard fstat(a, &x) == 0, fstat(b, &y) == 0 else { return false }
        return x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    /// The session has started: raw mode for a terminal, and which streams to relay.
    mutating func begin(_ mode: Hello.Mode) {
        switch mode {
        case .terminal:
            terminal = TerminalGuard(fd: 0)
            stdinOpen = true
        case .stdio(let passed, let null, _):
            stdinOpen = !passed.union(null).contains(.input)
            watchStdoutHangup = passed.contains(.output)
        }
    }

    /// Agent channels the jail opens go to our SSH_AUTH_SOCK (only if the hello offered it).
    func agentChannels() -> AgentChannels {
        let agentPath = environment["SSH_AUTH_SOCK"] ?? ""
        return AgentChannels(connect: agentPath.isEmpty ? nil : { try? UnixSocket.connect(path: agentPath) })
    }

    /// Stdio mode: relayed streams as frames, passed ones are the program's own.
    mutating func relay(_ channelIn: FrameChannel, signals: SignalDescriptor) throws(ClientError) -> Int32 {
        var channel = channelIn
        var poller = Poller()
        var agents = agentChannels()
        while true {
            poller.reset()
            let signalIndex = poller.add(signals.fd.rawValue, read: true)
            let socketIndex = poller.add(channel.socket.rawValue, read: true, write: channel.wantsWrite)
            let stdinIndex = stdinOpen && channel.canAcceptMore ? poller.add(0, read: true) : -1
            let stdoutIndex = watchStdoutHangup ? poller.add(1) : -1
            let agentWatches = agents.register(&poller, canSend: channel.canAcceptMore)
            do { _ = try poller.wait() } catch { throw .system(error) }
            agents.service(poller, agentWatches, channel: &channel)

            if poller.readable(signalIndex) { try handleSignals(signals, master: nil) }
            if stdinIndex >= 0 && poller.readable(stdinIndex) { forwardInput(&channel) }
            if stdoutIndex >= 0 && poller.hungUp(stdoutIndex) {
                // Whoever read our stdout is gone (ssh dropped, `| head` done): end the session
                // as a writer to a closed pipe would end.
                leave(by: SIGPIPE)
            }
            if poller.writable(socketIndex) { channel.flush() }
            if poller.readable(socketIndex) {
                let messages: [Message]
                do { messages = try channel.receive() } catch { throw .protocolError(error) }
                for message in messages {
                    switch message {
                    case .data(let stream, let bytes) where stream == 1 || stream == 2:
                        // Blocking writes: a slow reader slows the session down, nothing is lost,
                        // and nothing piles up here (the session's queue holds the rest).
                        do { try FileDescriptor(rawValue: Int32(stream)).writeFully(bytes) } catch {
                            if stream == 1 && error.errno == .brokenPipe {
                                // Our stdout's reader is gone: end as a writer to it would.
                                leave(by: SIGPIPE)
                            }
                        }
                    case .agentOpen, .agentData, .agentClose: _ = agents.handle(message, channel: &channel)
                    case .exit(let code): return code
                    case .error(let reason): throw .refused(reason)
                    default: throw .protocolError(.invalidValue("\(message.type) frame from the server"))
                    }
                }
                if channel.isClosed { throw .connectionLost }
            }
        }
    }

    mutating func forwardInput(_ channel: inout FrameChannel) {
        let chunk: [UInt8]?
        do { chunk = try FileDescriptor(rawValue: 0).readChunk(max: 64 << 10) } catch { chunk = [] }
        guard let chunk else { return }
        if chunk.isEmpty {
            stdinOpen = false
            channel.send(.endOfInput)
        } else {
            channel.enqueue(FrameEncoder.dataFrame(stream: 0, chunk[...]))
        }
        channel.flush()
    }

    /// SIGWINCH resizes the jail's pty (`master`, in terminal mode; stdio mode has no size).
    func handleSignals(_ signals: SignalDescriptor, master: FileDescriptor?) throws(ClientError) {
        let pending: [(signal: Int32, sender: Int32)]
        do { pending = try signals.drain() } catch { throw .system(error) }
        for (signal, _) in pending {
            if signal == SIGWINCH {
                if let master { MasterRelay.copyWindowSize(to: master) }
                continue
            }
            // Killed, hung up or interrupted: put the terminal back, then die the same way so
            // the caller sees why. Closing the connection (and, in terminal mode, our copy of
            // the pty master) hangs up the session inside.
            leave(by: signal)
        }
    }

    /// Puts the terminal back and dies of `signal`.
    func leave(by signal: Int32) -> Never {
        terminal?.restore()
        die(by: signal)
    }

    func die(by signal: Int32) -> Never {
        cj_reset_signals()
        raise(signal)
        exit(128 + signal)
    }
}
