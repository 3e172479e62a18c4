import JailSystem
import SystemPackage

/// The one message a starting process sends the one waiting for it (init to the supervisor,
/// the daemon to the jaild command): "R" when ready (with a short note: init adds the exit
/// status of `--rc`), "E" and a one-line reason when it failed. The pipe closing without
/// either means the sender died.
public enum Readiness: Equatable, Sendable {
    case ready(String)
    case failed(String)

    public var encoded: [UInt8] {
        switch self {
        case .ready(let note): Array(("R" + note).utf8)
        case .failed(let reason): Array(("E" + reason).utf8)
        }
    }

    public static func decode(_ bytes: [UInt8]) -> Readiness? {
        switch bytes.first {
        case UInt8(ascii: "R"): .ready(String(decoding: bytes.dropFirst(), as: UTF8.self))
        case UInt8(ascii: "E"): .failed(String(decoding: bytes.dropFirst(), as: UTF8.self))
        default: nil
        }
    }

    /// Sends it; a reader that is gone already has its answer (the sender's exit).
    public func send(on fd: FileDescriptor) {
        try? fd.writeFully(encoded)
    }

    /// Waits for the message: "R…" comes in one write (atomic on a pipe) and is complete (the
    /// sender goes on), "E…" ends with the pipe. nil when the pipe closed with nothing said.
    /// Closes `fd`.
    public static func receive(from fd: FileDescriptor) -> Readiness? {
        var message: [UInt8] = []
        while let chunk = try? fd.readChunk(max: 4096), !chunk.isEmpty {
            message += chunk
            if message.first == UInt8(ascii: "R") { break }
        }
        fd.closeQuietly()
        return decode(message)
    }
}
