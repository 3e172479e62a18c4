import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One end of a jail connection: decodes the frames that arrive and queues the frames to send
/// without ever blocking the poll loop that owns it.
public struct FrameChannel {
    public let socket: FileDescriptor
    private var decoder: FrameDecoder
    private var outgoing: [UInt8] = []
    private var sent = 0
    /// The peer closed its end (or the connection broke).
    public private(set) var isClosed = false

    /// Above this much unsent data the owner should stop producing (backpressure).
    public static let highWater = 256 << 10

    public init(socket: FileDescriptor, limits: Limits = .standard) {
        self.socket = socket
        self.decoder = FrameDecoder(limits: limits)
    }

    public var pendingOutput: Int { outgoing.count - sent }
    public var wantsWrite: Bool { pendingOutput > 0 }
    public var canAcceptMore: Bool { pendingOutput < Self.highWater }

    public mutating func send(_ message: Message) {
        enqueue(FrameEncoder.encode(message))
    }

    public mutating func enqueue(_ frame: [UInt8]) {
        if sent > 0 && sent == outgoing.count {
            outgoing.removeAll(keepingCapacity: true)
            sent = 0
        }
        outgoing += frame
    }

    /// Writes what the socket takes now. A broken connection marks the channel closed.
    public mutating func flush() {
        while sent < outgoing.count && !isClosed {
            let n = outgoing[sent...].withUnsafeBytes {
                Glibc.send(socket.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                sent += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EAGAIN {
                break
            } else {
                isClosed = true
            }
        }
        if sent == outgoing.count {
            outgoing.removeAll(keepingCapacity: true)
            sent = 0
        } else if sent >= Self.highWater {
            // A reader that is slow but never quite idle would keep `sent` short of the end
            // forever: drop what went out so the buffer stays bounded by what is pending.
            outgoing.removeFirst(sent)
            sent = 0
        }
    }

    /// Blocks until everything queued is written or the peer is gone.
    public mutating func flushFully() {
        while wantsWrite && !isClosed {
            flush()
            if wantsWrite && !isClosed { try? socket.waitWritable() }
        }
    }

    /// Reads what is available and returns the complete messages in it. On end of stream the
    /// channel is marked closed.
    public mutating func receive() throws(ProtocolError) -> [Message] {
        do {
            if let chunk = try socket.readChunk(max: 128 << 10) {
                if chunk.isEmpty { isClosed = true } else { decoder.append(chunk) }
            }
        } catch {
            isClosed = true
        }
        return try decodeBuffered()
    }

    /// Feeds bytes read elsewhere (with recvmsg, say) to the decoder.
    public mutating func absorb(_ bytes: [UInt8]) {
        decoder.append(bytes)
    }

    public mutating func decodeBuffered() throws(ProtocolError) -> [Message] {
        var messages: [Message] = []
        while let message = try decoder.next() { messages.append(message) }
        return messages
    }

    public mutating func markClosed() { isClosed = true }
}
