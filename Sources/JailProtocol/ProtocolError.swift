/// Why a frame was rejected. Every malformed input ends in one of these, never a trap.
public enum ProtocolError: Error, Equatable, CustomStringConvertible {
    case frameTooLarge(Int)
    case unknownFrameType(UInt8)
    case truncated(String)
    case trailingBytes(FrameType)
    case badMagic
    case unsupportedVersion(UInt16)
    case tooMany(String, Int)
    case stringTooLong(Int)
    case invalidValue(String)

    public var description: String {
        switch self {
        case .frameTooLarge(let n): "frame of \(n) bytes is too large"
        case .unknownFrameType(let t): "unknown frame type \(t)"
        case .truncated(let what): "frame ends inside \(what)"
        case .trailingBytes(let type): "\(type) frame has trailing bytes"
        case .badMagic: "not a jail client (bad magic)"
        case .unsupportedVersion(let v): "protocol version \(v) is not supported (this jaild speaks \(Protocol.version))"
        case .tooMany(let what, let n): "too many \(what) (\(n))"
        case .stringTooLong(let n): "string of \(n) bytes is too long"
        case .invalidValue(let what): "invalid \(what)"
        }
    }
}
