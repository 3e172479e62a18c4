import JailIO
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The session helper: one forked process per client connection, inside the jail.
///
/// It owns the connection, reads the hello (init never reads a byte from a client), starts
/// the user's program as the jail user in a new session, and relays the streams that were
/// not passed: in stdio mode the program's pipes, in terminal mode nothing (the pty master
/// goes to the client, which relays it itself); agent channels in both. The exit status goes
/// last, after all output. When the client goes away the program's process group gets
/// SIGHUP. It stays root but non-dumpable, so the user cannot ptrace it nor signal it, and
/// `kill -9 -1` inside leaves it alive to report the status.
struct SessionHelper {
    let configuration: JailConfiguration
    let settings: ProgramSettings
    var channel: FrameChannel
    let signals: SignalDescriptor
    /// The jail's name and this session's number (from init), for the session records.
    let jail: String
    let id: Int
    let peer: PeerCredentials?
    /// A spare's end of its socketpair with init, closed once the program runs: init forks the
    /// next spare then, so that its warm-up does not compete with this session's start.
    var startedNotice: FileDescriptor? = nil

    /// Runs the session and exits the process; never returns.
    static func run(connection: FileDescriptor, configuration: JailConfiguration, settings: ProgramSettings, jail: String,
                    id: Int, hostRoot: Bool) -> Never {
        do { try Hardening.forbidDumps() } catch {
            // No session rather than one whose descriptors root inside could take.
            log.error("session \(id) refused: \(error)")
            _exit(1)
        }
        setProcessTitle("jaild: session")
        do {
            let signals = try SignalDescriptor(signalSet)
            serve(connection: connection, signals: signals, configuration: configuration, settings: settings, jail: jail,
                  id: id, hostRoot: hostRoot)
        } catch {
            log.error("session: \(error)")
        }
        _exit(0)
    }

    /// What the helper takes through its signalfd (blocked, never handled).
    static let signalSet = [SIGCHLD, SIGTERM, SIGHUP, SIGINT, SIGPIPE]

    static func serve(connection: FileDescriptor, signals: SignalDescriptor, configuration: JailConfiguration,
                      settings: ProgramSettings, jail: String, id: Int, hostRoot: Bool,
                      startedNotice: FileDescriptor? = nil) -> Never {
        var helper = SessionHelper(configuration: configuration, settings: settings, channel: FrameChannel(socket: connection),
                                   signals: signals, jail: jail, id: id, peer: peerOnTheHost(connection, hostRoot: hostRoot))
        helper.startedNotice = startedNotice
        helper.serve()
    }

    /// The peer as the log and the `--root` check see it: root on the host is uid 0, also
    /// where a user namespace shows it as the overflow uid (it came through the control socket).
    static func peerOnTheHost(_ connection: FileDescriptor, hostRoot: Bool) -> PeerCredentials? {
        guard let peer = try? UnixSocket.peerCredentials(connection) else { return nil }
        return hostRoot ? PeerCredentials(pid: peer.pid, uid: 0, gid: 0) : peer
    }

    mutating func serve() -> Never {
        let hello: Hello
        let passed: [Int32]
        let early: [Message]
        do {
            (hello, passed, early) = try readHello()
        } catch {
            refuse(error.description)
        }
        // Root inside only for root on the host (`jaild enter --root`): the jail's own user
        // asking for it is refused, not quietly given a normal session.
        if hello.root && peer?.uid != 0 { refuse("only root on the host may enter the jail as root") }
        // --init: the session runs in the booted system's namespaces (Init+Payload.swift).
        if let refusal = PayloadEntry.enter(configuration: configuration) { refuse(refusal) }
        let session: Session
        var forwarding = SessionForwarding()
        do {
            let configuration = self.configuration
            session = try Session.start(hello: hello, passed: passed, configuration: configuration,
                                        settings: settings) { account in
                forwarding.prepare(hello: hello, account: account, configuration: configuration)
            }
        } catch {
            forwarding.remove()
            refuse(error.description)
        }
        for fd in passed { closeDescriptor(fd) }
        var record = SessionRecord(jail: jail, id: id, account: session.account ?? Account.root(passwd: ""),
                                   peer: peer,
                                   hello: hello, tty: session.pty?.slavePath)
        record.programPid = session.pid
        record.connectionFD = channel.socket.rawValue
        record.recordLogin()
        // Held (close-on-exec) until the helper exits: `jaild sessions` reads it from the host.
        // The program already runs: the session goes on, the operator is told it is unlisted.
        do { _ = try record.publish() } catch {
            log.error("session \(id) of jail \(jail) has no record (\(error)): jaild sessions does not list it, and only a stop of the jail ends it")
        }
        record.logStart()
        startedNotice?.closeQuietly()
        session.handOverTerminal(&channel)
        var relay = session.relay(channel: channel, signals: signals, early: early)
        relay.agents = AgentChannels(listener: forwarding.agentListener)
        // The session record's end line and utmp logout: before the status goes out, or after
        // the hangup when the client left first.
        let ended = record
        relay.beforeStatus = { ended.end(status: "\($0)") }
        if relay.run() == .clientGone {
            session.hangUp()
            record.end(status: "hangup")
        }
        forwarding.remove()
        _exit(0)
    }

    /// Reads frames until the hello is complete, with the handshake deadline. The client's
    /// descriptors arrive with the first bytes (SCM_RIGHTS). Frames that came in behind the
    /// hello are returned for the relay.
    mutating func readHello() throws(SessionError) -> (Hello, [Int32], [Message]) {
        var fds: [Int32] = []
        var poller = Poller()
        let deadline = monotonicMilliseconds() + Int64(configuration.handshakeTimeout) * 1000
        while true {
            let remaining = deadline - monotonicMilliseconds()
            guard remaining > 0 else { throw .handshakeTimeout }
            poller.reset()
            poller.add(channel.socket.rawValue, read: true)
            guard (try? poller.wait(timeout: Int32(remaining))) == true else { continue }
            let received: (bytes: [UInt8], fds: [Int32])?
            do {
                received = try UnixSocket.receive(channel.socket, max: 65536, maxDescriptors: 3)
            } catch {
                throw .system(error)
            }
            guard let received else { continue }
            fds += received.fds
            if received.bytes.isEmpty { throw .clientGone }
            channel.absorb(received.bytes)
            let messages: [Message]
            do { messages = try channel.decodeBuffered() } catch { throw .protocolError(error) }
            guard let first = messages.first else { continue }
            guard case .hello(let hello) = first else { throw .protocolError(.invalidValue("first frame is not a hello")) }
            return (hello, fds, Array(messages.dropFirst()))
        }
    }

    /// Tells the client why there is no session, then ends this helper.
    mutating func refuse(_ reason: String) -> Never {
        SessionRecord.logRefusal(jail: jail, id: id, peer: peer, reason: reason)
        channel.send(.error(reason))
        channel.flushFully()
        _exit(0)
    }
}

enum SessionError: Error, CustomStringConvertible {
    case handshakeTimeout
    case clientGone
    case system(SystemError)
    case protocolError(ProtocolError)
    case refused(String)

    var description: String {
        switch self {
        case .handshakeTimeout: "no hello from the client in time"
        case .clientGone: "the client went away before its hello"
        case .system(let e): e.description
        case .protocolError(let e): "protocol error: \(e)"
        case .refused(let s): s
        }
    }
}
