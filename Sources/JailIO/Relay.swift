import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The session's relay: moves bytes between the client's connection and a program until the
/// program ends (then what it left in its pipes, then its status, last) or the client goes
/// away. It never exits the process: it returns how it ended, and its owner (the session
/// helper) decides what that means. So it runs in unit tests over socketpairs and pipes.
///
/// Streams that are not passed to the program go through here (stdio mode); a terminal
/// session has none: its pty master went to the client, and the relay carries only agent
/// channels, sees the client leave, and sends the status.
///
/// Every buffer is bounded, in both directions: output is read from the program only while
/// the client's queue is below `FrameChannel.highWater`, and the client's socket is read only
/// while the input not yet taken by the program is below `inboxLimit`. A client that stops
/// reading stops the program at its next write (backpressure), it never grows the helper.
public struct Relay {
    public enum Outcome: Equatable, Sendable {
        /// The program ended; its status went out after its output (unless the client left
        /// while it was being sent).
        case exited(Int32)
        /// The client closed the connection, or broke the protocol, while the program ran.
        case clientGone
    }

    /// The program's side of the relay.
    public struct Program {
        /// Where stream 0 goes: the write end of the program's stdin pipe.
        public var input: FileDescriptor?
        /// Where streams 1 and 2 come from: the read ends of the program's stdout/stderr pipes.
        public var outputs: [(stream: UInt8, fd: FileDescriptor)]
        /// Readable when the program may have ended (the helper's signalfd for SIGCHLD).
        public var exitEvents: FileDescriptor
        /// Called when `exitEvents` is readable: the program's exit code once it has ended.
        public var reap: () -> Int32?

        public init(input: FileDescriptor?, outputs: [(stream: UInt8, fd: FileDescriptor)],
                    exitEvents: FileDescriptor, reap: @escaping () -> Int32?) {
            self.input = input
            self.outputs = outputs
            self.exitEvents = exitEvents
            self.reap = reap
        }
    }

    public private(set) var channel: FrameChannel
    var program: Program
    /// Called with the program's status once its output is out, just before the status goes
    /// to the client (the session record's end line: logged before the client can see it).
    public var beforeStatus: (Int32) -> Void = { _ in }
    /// ssh agent connections from inside the jail, carried to the client (--forward-agent).
    public var agents = AgentChannels()
    /// Client bytes not yet taken by the program's stdin pipe; `inboxStart` of them are
    /// already written (the front is dropped in bulk, not byte by byte).
    var inbox: [UInt8] = []
    var inboxStart = 0
    var inputEnded = false
    var exitCode: Int32?

    /// Bytes per read from the program and per data frame (the protocol's `maxDataBytes`).
    public static let chunk = 64 << 10
    /// Client input held for a program that does not read it, before the socket is left unread.
    public static let inboxLimit = 256 << 10

    /// `early`: frames the client sent right behind its hello (stdin bytes, its end).
    public init(channel: FrameChannel, program: Program, early: [Message] = []) {
        self.channel = channel
        self.program = program
        try? channel.socket.setNonBlocking(true)
        try? program.input?.setNonBlocking(true)
        for output in program.outputs { try? output.fd.setNonBlocking(true) }
        handle(early)
    }

    var pendingInput: Int { inbox.count - inboxStart }

    /// After this long without an event, the relay gives back the pages of jaild's code it
    /// mapped (CJail/memory.c, as init's idle loop does) and sleeps: an idle session's helper
    /// otherwise keeps every 2 MiB window of code its set-up touched (ExecutableCache), 1.4 MiB
    /// of PSS per helper with 10 idle sessions, measured, against 0.5 before those windows.
    public static let idleMilliseconds: Int32 = 1000

    public mutating func run() -> Outcome {
        var poller = Poller()
        // The last wait ran out: the next gives back the code's pages first.
        var idle = false
        while true {
            if let code = exitCode { return finish(code) }
            if channel.isClosed { return .clientGone }
            poller.reset()
            let exitIndex = poller.add(program.exitEvents.rawValue, read: true)
            let socketIndex = poller.add(channel.socket.rawValue, read: pendingInput < Self.inboxLimit,
                                         write: channel.wantsWrite)
            // Watched only with bytes to write: a stdin whose reader is gone polls POLLERR forever.
            let inputIndex = pendingInput > 0 ? program.input.map { poller.add($0.rawValue, write: true) } : nil
            // Output is read only while the client's queue has room: backpressure.
            let sources = channel.canAcceptMore ? program.outputs : []
            let firstSource = sources.isEmpty ? -1 : poller.add(sources[0].fd.rawValue, read: true)
            for source in sources.dropFirst() { poller.add(source.fd.rawValue, read: true) }
            let agentWatches = agents.register(&poller, canSend: channel.canAcceptMore)

            do {
                if idle {
                    idle = false
                    _ = try poller.wait(timeout: -1, using: { pollReleasingCodePages($0, $1, $2) })
                } else if try !poller.wait(timeout: Self.idleMilliseconds) {
                    idle = true
                    continue
                }
            } catch { return .clientGone }

            if poller.readable(exitIndex), let code = program.reap() { exitCode = code }
            if poller.readable(socketIndex) { receiveFromClient() }
            if poller.writable(socketIndex) { channel.flush() }
            if let inputIndex, poller.writable(inputIndex) { feedProgram() }
            for (offset, source) in sources.enumerated() where poller.readable(firstSource + offset) {
                _ = forwardOutput(source, max: Self.chunk)
            }
            agents.service(poller, agentWatches, channel: &channel)
            channel.flush()
        }
    }

    mutating func receiveFromClient() {
        let messages: [Message]
        do { messages = try channel.receive() } catch {
            channel.markClosed()
            return
        }
        handle(messages)
        feedProgram()
    }

    mutating func handle(_ messages: [Message]) {
        for message in messages {
            switch message {
            case .data(0, let bytes): if !inputEnded && program.input != nil { inbox += bytes }
            case .endOfInput: inputEnded = true
            case .agentData, .agentClose: _ = agents.handle(message, channel: &channel)
            default:
                // hello, exit, error, terminal or output frames from a client: it is not
                // speaking the protocol, so it is treated as gone.
                channel.markClosed()
            }
        }
    }

    mutating func feedProgram() {
        guard let target = program.input else { return }
        if pendingInput > 0 {
            do {
                inboxStart += try target.writeSome(inbox[inboxStart...])
            } catch {
                // The program closed its stdin: further input has nowhere to go.
                inboxStart = inbox.count
                inputEnded = true
            }
            if inboxStart == inbox.count {
                inbox.removeAll(keepingCapacity: true)
                inboxStart = 0
            } else if inboxStart >= Self.chunk {
                inbox.removeFirst(inboxStart)
                inboxStart = 0
            }
        }
        if inputEnded && pendingInput == 0 {
            target.closeQuietly()
            program.input = nil
        }
    }

    /// Reads up to `max` bytes the program wrote and queues them for the client. Returns how
    /// many it read, `ended` at end of file (or an error), `drained` when it has nothing now
    /// (EAGAIN).
    mutating func forwardOutput(_ source: (stream: UInt8, fd: FileDescriptor), max: Int) -> ReadResult {
        let bytes: [UInt8]?
        do { bytes = try source.fd.readChunk(max: max) } catch {
            closeOutput(source.fd)
            return .ended
        }
        guard let bytes else { return .drained }
        if bytes.isEmpty {
            closeOutput(source.fd)
            return .ended
        }
        channel.enqueue(FrameEncoder.dataFrame(stream: source.stream, bytes[...]))
        return .read(bytes.count)
    }

    enum ReadResult: Equatable {
        case read(Int)
        case drained
        case ended
    }

    mutating func closeOutput(_ fd: FileDescriptor) {
        fd.closeQuietly()
        program.outputs.removeAll { $0.fd == fd }
    }

    /// The program has ended: forward what it left in its pipes, then its status.
    ///
    /// Everything the program wrote before it exited is in the pipe when it is reaped, so
    /// each source is read until it ends, has nothing more, or has given what it held at this
    /// moment plus one chunk. A background child that keeps writing cannot hold the session
    /// open, and the client's queue keeps its bound while the rest drains.
    mutating func finish(_ code: Int32) -> Outcome {
        var budgets = program.outputs.map { max(0, Int(cj_bytes_queued($0.fd.rawValue))) + Self.chunk }
        var sources = program.outputs
        while !sources.isEmpty && !channel.isClosed {
            if channel.canAcceptMore {
                var index = 0
                while index < sources.count {
                    let result = forwardOutput(sources[index], max: min(Self.chunk, budgets[index]))
                    if case .read(let n) = result, budgets[index] > n {
                        budgets[index] -= n
                        index += 1
                    } else {
                        sources.remove(at: index)
                        budgets.remove(at: index)
                    }
                }
            }
            channel.flush()
            if !channel.canAcceptMore && !channel.isClosed { try? channel.socket.waitWritable() }
        }
        beforeStatus(code)
        channel.send(.exit(code: code))
        channel.flushFully()
        return .exited(code)
    }
}
