import CJail
import JailIO
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The session helper's loop: moves bytes between the client and the program until the
/// program exits (then the rest of its output, then its status) or the client goes away
/// (then SIGHUP to the program's process group).
struct Relay {
    var session: Session
    var channel: FrameChannel
    let signals: SignalDescriptor
    /// Client bytes not yet taken by the program's pty or stdin pipe.
    var inbox: [UInt8] = []
    var inputEnded = false
    var exitCode: Int32?
    /// The pty master read EIO: nobody holds the slave any more.
    var terminalClosed = false
    /// Called once as the session ends, with the status (`hangup` if the client left first):
    /// the session record's end line and utmp logout (SessionRecord).
    var ended: (String) -> Void = { _ in }

    static let chunk = 64 << 10

    /// `early`: frames the client sent right behind its hello (typeahead, a resize).
    init(session: Session, channel: FrameChannel, signals: SignalDescriptor, early: [Message]) {
        self.session = session
        self.channel = channel
        self.signals = signals
        try? channel.socket.setNonBlocking(true)
        try? session.pty?.master.setNonBlocking(true)
        try? session.input?.setNonBlocking(true)
        for output in session.outputs { try? output.fd.setNonBlocking(true) }
        handle(early)
    }

    /// Where the program's input goes: the pty master or the stdin pipe.
    var inputTarget: FileDescriptor? { session.pty?.master ?? session.input }
    var outputSources: [(stream: UInt8, fd: FileDescriptor)] {
        if let pty = session.pty { return terminalClosed ? [] : [(stream: UInt8(1), fd: pty.master)] }
        return session.outputs
    }

    mutating func run() -> Never {
        var poller = Poller()
        while true {
            if let code = exitCode { finish(code) }
            if channel.isClosed { hangUp() }
            poller.reset()
            let signalIndex = poller.add(signals.fd.rawValue, read: true)
            let socketIndex = poller.add(channel.socket.rawValue, read: inbox.count < Self.chunk * 4, write: channel.wantsWrite)
            let targetIndex = inputTarget.map { poller.add($0.rawValue, write: !inbox.isEmpty) }
            let sources = outputSources
            let firstSource = sources.isEmpty ? -1 : poller.add(sources[0].fd.rawValue, read: channel.canAcceptMore)
            for source in sources.dropFirst() { poller.add(source.fd.rawValue, read: channel.canAcceptMore) }

            do { _ = try poller.wait() } catch { hangUp() }

            if poller.readable(signalIndex) { handleSignals() }
            if poller.readable(socketIndex) { receiveFromClient() }
            if poller.writable(socketIndex) { channel.flush() }
            if let targetIndex, poller.writable(targetIndex) { feedProgram() }
            if firstSource >= 0 {
                for (offset, source) in sources.enumerated() where poller.readable(firstSource + offset) {
                    forwardOutput(source, drain: false)
                }
            }
        }
    }

    mutating func handleSignals() {
        guard let pending = try? signals.drain() else { return }
        for (signal, _) in pending where signal == SIGCHLD {
            if let (_, code) = reapChild(session.pid) { exitCode = code }
        }
        // SIGTERM and SIGHUP reach the helper when the jail shuts down: the program gets its
        // own, and the helper stays to report how it ended.
    }

    mutating func receiveFromClient() {
        let messages: [Message]
        do { messages = try channel.receive() } catch {
            log.warning("session \(session.pid): \(error)")
            channel.markClosed()
            return
        }
        handle(messages)
        feedProgram()
    }

    mutating func handle(_ messages: [Message]) {
        for message in messages {
            switch message {
            case .data(0, let bytes): if !inputEnded { inbox += bytes }
            case .endOfInput: inputEnded = true
            case .windowSize(let size): try? session.pty?.resize(size)
            default:
                log.warning("session \(session.pid): unexpected \(message.type) frame")
                channel.markClosed()
            }
        }
    }

    mutating func feedProgram() {
        guard let target = inputTarget else { return }
        if !inbox.isEmpty {
            do {
                let n = try target.writeSome(inbox[...])
                inbox.removeFirst(n)
            } catch {
                // The program closed its stdin: further input has nowhere to go.
                inbox.removeAll()
                inputEnded = true
            }
        }
        if inputEnded && inbox.isEmpty, let input = session.input {
            input.closeQuietly()
            session.input = nil
        }
    }

    /// Reads what the program wrote and queues it for the client. With `drain`, reads until
    /// nothing is left (the program has exited).
    mutating func forwardOutput(_ source: (stream: UInt8, fd: FileDescriptor), drain: Bool) {
        repeat {
            let chunk: [UInt8]?
            do { chunk = try source.fd.readChunk(max: Self.chunk) } catch {
                // EIO on a pty master: every holder of the slave has closed it.
                closeOutput(source.fd)
                return
            }
            guard let chunk else { return }
            if chunk.isEmpty {
                closeOutput(source.fd)
                return
            }
            channel.enqueue(FrameEncoder.dataFrame(stream: source.stream, chunk[...]))
            if !drain { break }
        } while true
        channel.flush()
    }

    mutating func closeOutput(_ fd: FileDescriptor) {
        if session.pty != nil {
            terminalClosed = true
        } else {
            fd.closeQuietly()
            session.outputs.removeAll { $0.fd == fd }
        }
    }

    /// The program has exited: send what it left in the pty or pipes, then its status.
    mutating func finish(_ code: Int32) -> Never {
        for source in outputSources { forwardOutput(source, drain: true) }
        ended("\(code)")
        channel.send(.exit(code: code))
        channel.flushFully()
        _exit(0)
    }

    /// The client is gone: hang up on the program, as a terminal hangup would.
    func hangUp() -> Never {
        kill(-session.pid, SIGHUP)
        kill(-session.pid, SIGCONT)
        ended("hangup")
        _exit(0)
    }
}
