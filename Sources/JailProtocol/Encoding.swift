/// Frame layout: a 4-byte big-endian length of what follows, a 1-byte type, the payload.
/// Integers are big-endian; a string is a u32 length and its bytes; a list is a u32 count.
public enum FrameEncoder {
    public static let headerBytes = 5

    public static func encode(_ message: Message) -> [UInt8] {
        var w = ByteWriter()
        switch message {
        case .hello(let hello): encode(hello, into: &w)
        case .data(let stream, let bytes):
            w.u8(stream)
            w.raw(bytes)
        case .endOfInput, .terminal: break
        case .exit(let code): w.u32(UInt32(bitPattern: code))
        case .error(let text): w.string(text)
        case .agentOpen(let channel), .agentClose(let channel): w.u32(channel)
        case .agentData(let channel, let bytes):
            w.u32(channel)
            w.raw(bytes)
        }
        var frame: [UInt8] = []
        frame.reserveCapacity(headerBytes + w.bytes.count)
        appendU32(UInt32(w.bytes.count + 1), to: &frame)
        frame.append(message.type.rawValue)
        frame += w.bytes
        return frame
    }

    /// A data frame built without intermediate copies: it sits on the relay's hot path.
    public static func dataFrame(stream: UInt8, _ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var frame: [UInt8] = []
        frame.reserveCapacity(headerBytes + 1 + bytes.count)
        appendU32(UInt32(bytes.count + 2), to: &frame)
        frame.append(FrameType.data.rawValue)
        frame.append(stream)
        frame += bytes
        return frame
    }

    private static func encode(_ hello: Hello, into w: inout ByteWriter) {
        w.raw(Protocol.magic)
        w.u16(hello.version)
        w.u8((hello.login ? Hello.loginFlag : 0) | (hello.root ? Hello.rootFlag : 0) | (hello.x11 != nil ? Hello.x11Flag : 0)
             | (hello.offersAgent ? Hello.agentFlag : 0))
        w.byteStringList(hello.argumentBytes)
        w.byteStringList(hello.environmentBytes)
        switch hello.mode {
        case .stdio(let passed, let null, let joined):
            w.u8(0)
            w.u8(passed.rawValue)
            w.u8(null.rawValue)
            w.u8(joined ? 1 : 0)
        case .terminal(let modes, let size):
            w.u8(1)
            w.u32(modes.inputFlags)
            w.u32(modes.outputFlags)
            w.u32(modes.controlFlags)
            w.u32(modes.localFlags)
            w.u32(modes.inputSpeed)
            w.u32(modes.outputSpeed)
            w.u8(UInt8(truncatingIfNeeded: modes.controlCharacters.count))
            w.raw(modes.controlCharacters.prefix(255))
            encode(size, into: &w)
        }
        if let x11 = hello.x11 {
            w.string(x11.display)
            w.string(x11.protocolName)
            w.u32(UInt32(x11.data.count))
            w.raw(x11.data)
        }
    }

    private static func encode(_ size: WindowSize, into w: inout ByteWriter) {
        w.u16(size.rows)
        w.u16(size.columns)
    }

    static func appendU32(_ value: UInt32, to bytes: inout [UInt8]) {
        bytes.append(UInt8(value >> 24))
        bytes.append(UInt8(truncatingIfNeeded: value >> 16))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }
}

struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }
    mutating func u32(_ v: UInt32) { FrameEncoder.appendU32(v, to: &bytes) }
    mutating func raw<C: Collection<UInt8>>(_ v: C) { bytes += v }
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        u32(UInt32(utf8.count))
        bytes += utf8
    }
    mutating func byteStringList(_ list: [[UInt8]]) {
        u32(UInt32(list.count))
        for s in list {
            u32(UInt32(s.count))
            bytes += s
        }
    }
}
