/// Splits a byte stream into messages. Feed it what arrives with `append`, then call `next`
/// until it returns nil. Every malformed input throws; nothing traps.
public struct FrameDecoder {
    public let limits: Limits
    private var buffer: [UInt8] = []
    private var start = 0

    public init(limits: Limits = .standard) {
        self.limits = limits
    }

    public mutating func append<C: Collection<UInt8>>(_ bytes: C) {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        buffer += bytes
    }

    /// Bytes received but not yet part of a complete frame.
    public var pendingBytes: Int { buffer.count - start }

    public mutating func next() throws(ProtocolError) -> Message? {
        let available = buffer.count - start
        guard available >= 4 else { return nil }
        let length = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16
            | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
        guard length >= 1 else { throw .truncated("frame type") }
        guard length <= limits.maxFrameBytes else { throw .frameTooLarge(length) }
        guard available >= 4 + length else { return nil }
        let body = buffer[(start + 4)..<(start + 4 + length)]
        start += 4 + length
        return try Self.decode(body, limits: limits)
    }

    /// Decodes one frame body (type byte and payload).
    public static func decode(_ body: ArraySlice<UInt8>, limits: Limits = .standard) throws(ProtocolError) -> Message {
        var r = ByteReader(body)
        let rawType = try r.u8("frame type")
        guard let type = FrameType(rawValue: rawType) else { throw .unknownFrameType(rawType) }
        let message: Message
        switch type {
        case .hello: message = .hello(try decodeHello(&r, limits: limits))
        case .data:
            let stream = try r.u8("stream")
            guard stream <= 2 else { throw .invalidValue("stream \(stream)") }
            let bytes = r.rest()
            guard bytes.count <= limits.maxDataBytes else { throw .frameTooLarge(bytes.count) }
            message = .data(stream: stream, bytes: Array(bytes))
        case .endOfInput: message = .endOfInput
        case .terminal: message = .terminal
        case .exit:
            let code = Int32(bitPattern: try r.u32("exit code"))
            guard (0...255).contains(code) else { throw .invalidValue("exit code \(code)") }
            message = .exit(code: code)
        case .error: message = .error(try r.string(limits.maxMessageBytes))
        case .agentOpen: message = .agentOpen(channel: try r.u32("agent channel"))
        case .agentClose: message = .agentClose(channel: try r.u32("agent channel"))
        case .agentData:
            let channel = try r.u32("agent channel")
            let bytes = r.rest()
            guard bytes.count <= limits.maxDataBytes else { throw .frameTooLarge(bytes.count) }
            message = .agentData(channel: channel, bytes: Array(bytes))
        }
        guard r.isAtEnd else { throw .trailingBytes(type) }
        return message
    }

    private static func decodeHello(_ r: inout ByteReader, limits: Limits) throws(ProtocolError) -> Hello {
        guard try r.bytes(4, "magic").elementsEqual(Protocol.magic) else { throw .badMagic }
        let version = try r.u16("version")
        guard version == Protocol.version else { throw .unsupportedVersion(version) }
        let flags = try r.u8("flags")
        guard flags & ~Hello.knownFlags == 0 else { throw .invalidValue("hello flags \(flags)") }
        let arguments = try r.byteStringList("arguments", max: limits.maxArguments, maxString: limits.maxStringBytes)
        let environment = try r.byteStringList("environment", max: limits.maxEnvironment, maxString: limits.maxStringBytes)
        let modeByte = try r.u8("mode")
        let mode: Hello.Mode
        switch modeByte {
        case 0:
            let passed = StdioSet(rawValue: try r.u8("passed descriptors"))
            guard passed.rawValue & ~StdioSet.all.rawValue == 0 else { throw .invalidValue("passed descriptors") }
            let null = StdioSet(rawValue: try r.u8("null streams"))
            guard null.rawValue & ~StdioSet.all.rawValue == 0, passed.isDisjoint(with: null) else {
                throw .invalidValue("null streams")
            }
            let joined = try r.u8("stderr joins stdout")
            // Only a relayed stderr can join a relayed stdout.
            guard joined <= 1, joined == 0 || passed.union(null).isDisjoint(with: [.output, .error]) else {
                throw .invalidValue("stderr joins stdout \(joined)")
            }
            mode = .stdio(passed: passed, null: null, stderrJoinsStdout: joined == 1)
        case 1:
            let input = try r.u32("termios")
            let output = try r.u32("termios")
            let control = try r.u32("termios")
            let local = try r.u32("termios")
            let inputSpeed = try r.u32("termios")
            let outputSpeed = try r.u32("termios")
            let ccCount = Int(try r.u8("termios"))
            guard ccCount <= limits.maxControlCharacters else { throw .tooMany("control characters", ccCount) }
            let cc = Array(try r.bytes(ccCount, "control characters"))
            let modes = TerminalModes(
                inputFlags: input, outputFlags: output, controlFlags: control, localFlags: local,
                controlCharacters: cc, inputSpeed: inputSpeed, outputSpeed: outputSpeed)
            mode = .terminal(modes, try decodeWindowSize(&r))
        default: throw .invalidValue("mode \(modeByte)")
        }
        var x11: X11Cookie?
        if flags & Hello.x11Flag != 0 {
            let display = try r.string(limits.maxX11FieldBytes)
            let name = try r.string(limits.maxX11FieldBytes)
            let count = Int(try r.u32("x11 cookie length"))
            guard count <= limits.maxX11FieldBytes else { throw .stringTooLong(count) }
            x11 = X11Cookie(display: display, protocolName: name, data: Array(try r.bytes(count, "x11 cookie")))
        }
        return Hello(version: version, mode: mode, login: flags & Hello.loginFlag != 0, argumentBytes: arguments,
                     environmentBytes: environment, root: flags & Hello.rootFlag != 0, x11: x11,
                     offersAgent: flags & Hello.agentFlag != 0)
    }

    private static func decodeWindowSize(_ r: inout ByteReader) throws(ProtocolError) -> WindowSize {
        WindowSize(rows: try r.u16("window size"), columns: try r.u16("window size"))
    }
}

struct ByteReader {
    private var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    var isAtEnd: Bool { bytes.isEmpty }

    mutating func u8(_ what: String) throws(ProtocolError) -> UInt8 {
        guard let b = bytes.first else { throw .truncated(what) }
        bytes = bytes.dropFirst()
        return b
    }

    mutating func u16(_ what: String) throws(ProtocolError) -> UInt16 {
        let b = try self.bytes(2, what)
        return UInt16(b[b.startIndex]) << 8 | UInt16(b[b.startIndex + 1])
    }

    mutating func u32(_ what: String) throws(ProtocolError) -> UInt32 {
        let b = try self.bytes(4, what)
        let i = b.startIndex
        return UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    mutating func bytes(_ count: Int, _ what: String) throws(ProtocolError) -> ArraySlice<UInt8> {
        guard count >= 0, bytes.count >= count else { throw .truncated(what) }
        let result = bytes.prefix(count)
        bytes = bytes.dropFirst(count)
        return result
    }

    mutating func rest() -> ArraySlice<UInt8> {
        defer { bytes = bytes.suffix(0) }
        return bytes
    }

    mutating func string(_ max: Int) throws(ProtocolError) -> String {
        String(decoding: try byteString(max), as: UTF8.self)
    }

    /// A length and its bytes, taken as they are (argv and the environment are byte strings:
    /// any byte but NUL).
    mutating func byteString(_ max: Int) throws(ProtocolError) -> [UInt8] {
        let count = Int(try u32("string length"))
        guard count <= max else { throw .stringTooLong(count) }
        let raw = try bytes(count, "string")
        // NUL cannot appear in argv or the environment: refuse rather than truncate silently.
        guard !raw.contains(0) else { throw .invalidValue("string with NUL byte") }
        return Array(raw)
    }

    mutating func byteStringList(_ what: String, max: Int, maxString: Int) throws(ProtocolError) -> [[UInt8]] {
        let count = Int(try u32("\(what) count"))
        guard count <= max else { throw .tooMany(what, count) }
        var list: [[UInt8]] = []
        for _ in 0..<count { list.append(try byteString(maxString)) }
        return list
    }
}
