import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// ssh agent connections carried over a session's own connection (agentOpen / agentData /
/// agentClose frames, multiplexed with the session's streams). One type for both ends: in
/// the session helper each connection comes from the agent socket inside the jail (`listener`)
/// and opens a channel; in the client a channel is connected to SSH_AUTH_SOCK (`connect`).
///
/// Bounded like the rest of the relay: at most `maxChannels` at once (more are refused at
/// accept, or closed at open), a connection is read only while the frame queue has room
/// (FrameChannel.canAcceptMore), and a connection that does not take what the other side
/// sends is closed once `bufferLimit` bytes wait for it.
public struct AgentChannels {
    public static let maxChannels = 8
    public static let bufferLimit = 256 << 10
    static let chunk = 16 << 10

    struct Connection {
        let fd: FileDescriptor
        var outgoing: [UInt8] = []
    }

    var connections: [UInt32: Connection] = [:]
    var nextChannel: UInt32 = 1
    /// The session helper's listening socket inside the jail (non-blocking).
    public var listener: FileDescriptor?
    /// The client's: connects a new channel to its agent; nil refuses every channel.
    public var connect: (() -> FileDescriptor?)?

    public init(listener: FileDescriptor? = nil, connect: (() -> FileDescriptor?)? = nil) {
        self.listener = listener
        self.connect = connect
        try? listener?.setNonBlocking(true)
    }

    public var count: Int { connections.count }

    public enum Watch {
        case listener(Int)
        case connection(UInt32, Int)
    }

    /// Adds what to wait for; `canSend`: the frame queue has room for more.
    public func register(_ poller: inout Poller, canSend: Bool) -> [Watch] {
        var watches: [Watch] = []
        if let listener, canSend, connections.count < Self.maxChannels {
            watches.append(.listener(poller.add(listener.rawValue, read: true)))
        }
        for (id, connection) in connections where canSend || !connection.outgoing.isEmpty {
            watches.append(.connection(id, poller.add(connection.fd.rawValue, read: canSend,
                                                      write: !connection.outgoing.isEmpty)))
        }
        return watches
    }

    /// Accepts, reads and writes what the poll said is ready; frames go to `channel`.
    public mutating func service(_ poller: Poller, _ watches: [Watch], channel: inout FrameChannel) {
        for watch in watches {
            switch watch {
            case .listener(let index):
                guard poller.readable(index), let listener else { continue }
                while connections.count < Self.maxChannels, let accepted = try? UnixSocket.accept(listener) {
                    let id = nextChannel
                    nextChannel &+= 1
                    connections[id] = Connection(fd: accepted)
                    channel.send(.agentOpen(channel: id))
                }
            case .connection(let id, let index):
                if poller.writable(index) { flush(id, channel: &channel) }
                if poller.readable(index) { read(id, channel: &channel) }
            }
        }
    }

    mutating func read(_ id: UInt32, channel: inout FrameChannel) {
        guard let connection = connections[id] else { return }
        let bytes: [UInt8]?
        do { bytes = try connection.fd.readChunk(max: Self.chunk) } catch { bytes = [] }
        guard let bytes else { return }
        if bytes.isEmpty {
            close(id, channel: &channel)
        } else {
            channel.send(.agentData(channel: id, bytes: bytes))
        }
    }

    mutating func flush(_ id: UInt32, channel: inout FrameChannel) {
        guard var connection = connections[id], !connection.outgoing.isEmpty else { return }
        do {
            let n = try connection.fd.writeSome(connection.outgoing[...])
            connection.outgoing.removeFirst(n)
            connections[id] = connection
        } catch {
            close(id, channel: &channel)
        }
    }

    /// An agent frame from the other side; false if `message` is not one.
    public mutating func handle(_ message: Message, channel: inout FrameChannel) -> Bool {
        switch message {
        case .agentOpen(let id):
            // Only the client gets these: it connects to its agent, or refuses at once.
            if connections[id] == nil, connections.count < Self.maxChannels, let fd = connect?() {
                try? fd.setNonBlocking(true)
                connections[id] = Connection(fd: fd)
            } else if connections[id] == nil {
                channel.send(.agentClose(channel: id))
            }
        case .agentData(let id, let bytes):
            // Data for a channel already closed here is dropped: its close is on its way.
            guard var connection = connections[id] else { return true }
            connection.outgoing += bytes
            connections[id] = connection
            if connection.outgoing.count > Self.bufferLimit {
                close(id, channel: &channel)
            } else {
                flush(id, channel: &channel)
            }
        case .agentClose(let id):
            if let connection = connections.removeValue(forKey: id) { connection.fd.closeQuietly() }
        default:
            return false
        }
        return true
    }

    mutating func close(_ id: UInt32, channel: inout FrameChannel) {
        guard let connection = connections.removeValue(forKey: id) else { return }
        connection.fd.closeQuietly()
        channel.send(.agentClose(channel: id))
    }

    /// The session is over: every connection and the listener go.
    public mutating func closeAll() {
        for connection in connections.values { connection.fd.closeQuietly() }
        connections = [:]
        listener?.closeQuietly()
        listener = nil
    }
}
