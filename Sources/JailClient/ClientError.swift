import JailProtocol
import JailSystem

/// Why `jail` could not give a session: printed as one line `jail: …`, exit 255.
public enum ClientError: Error, CustomStringConvertible {
    case noJail(uid: UInt32, socket: String, reason: String)
    case untrusted(String)
    case system(SystemError)
    case refused(String)
    case protocolError(ProtocolError)
    case connectionLost

    public var description: String {
        switch self {
        case .noJail(let uid, let socket, let reason): "no jail is running for uid \(uid): \(socket): \(reason)"
        case .untrusted(let s): s
        case .system(let e): e.description
        case .refused(let s): s
        case .protocolError(let e): "protocol error: \(e)"
        case .connectionLost: "the jail closed the connection before the session ended"
        }
    }
}
