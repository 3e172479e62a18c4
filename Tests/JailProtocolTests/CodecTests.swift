import JailProtocol
import XCTest

final class CodecTests: XCTestCase {
    let terminalHello = Hello(
        mode: .terminal(
            TerminalModes(inputFlags: 0x500, outputFlags: 5, controlFlags: 0xbf, localFlags: 0x8a3b,
                          controlCharacters: Array(0..<32), inputSpeed: 15, outputSpeed: 15),
            WindowSize(rows: 40, columns: 120)),
        login: true, arguments: ["-c", "echo 'héllo' \"x\""], environment: ["TERM=xterm", "LANG=C.UTF-8"])

    let samples: [Message] = [
        .data(stream: 0, bytes: []),
        .data(stream: 1, bytes: Array(0...255)),
        .data(stream: 2, bytes: [0, 10, 13]),
        .endOfInput,
        .terminal,
        .exit(code: 0),
        .exit(code: 137),
        .error("no such user"),
        .agentOpen(channel: 1),
        .agentData(channel: 0xffff_ffff, bytes: Array(0...255)),
        .agentData(channel: 2, bytes: []),
        .agentClose(channel: 7),
        .hello(Hello(mode: .stdio(passed: [.input, .error]), login: false, arguments: [], environment: [])),
        .hello(Hello(mode: .stdio(passed: [.input], null: [.error]), login: false, arguments: [], environment: [])),
        .hello(Hello(mode: .stdio(passed: [], null: [.input], stderrJoinsStdout: true), login: false, arguments: [],
                     environment: [])),
    ]

    func decodeAll(_ bytes: [UInt8]) throws -> [Message] {
        var decoder = FrameDecoder()
        decoder.append(bytes)
        var out: [Message] = []
        while let m = try decoder.next() { out.append(m) }
        XCTAssertEqual(decoder.pendingBytes, 0)
        return out
    }

    func testRoundTripEveryMessage() throws {
        let all = samples + [.hello(terminalHello)]
        let stream = all.flatMap(FrameEncoder.encode)
        XCTAssertEqual(try decodeAll(stream), all)
    }

    func testByteByByteDelivery() throws {
        let all = samples + [.hello(terminalHello)]
        let stream = all.flatMap(FrameEncoder.encode)
        var decoder = FrameDecoder()
        var out: [Message] = []
        for byte in stream {
            decoder.append([byte])
            while let m = try decoder.next() { out.append(m) }
        }
        XCTAssertEqual(out, all)
    }

    func testDataFrameMatchesGenericEncoding() {
        let bytes: [UInt8] = Array(repeating: 7, count: 1000)
        XCTAssertEqual(FrameEncoder.dataFrame(stream: 2, bytes[...]), FrameEncoder.encode(.data(stream: 2, bytes: bytes)))
    }

    func testFrameLayoutIsBigEndianLengthThenType() {
        XCTAssertEqual(FrameEncoder.encode(.exit(code: 3)), [0, 0, 0, 5, 5, 0, 0, 0, 3])
        XCTAssertEqual(FrameEncoder.encode(.endOfInput), [0, 0, 0, 1, 3])
    }

    func testRejectsOversizedFrameBeforeItArrives() {
        var decoder = FrameDecoder()
        decoder.append([0x7f, 0xff, 0xff, 0xff])
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? ProtocolError, .frameTooLarge(0x7fff_ffff)) }
    }

    func testStdioHelloLayoutAndItsRules() {
        let hello = Hello(mode: .stdio(passed: [.input], null: [.error], stderrJoinsStdout: false), login: false,
                          arguments: [], environment: [])
        let frame = FrameEncoder.encode(.hello(hello))
        // … magic, version 3, login, 0 arguments, 0 environment, mode 0, passed, null, joined.
        XCTAssertEqual(Array(frame[5...]), Array("JAIL".utf8) + [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 4, 0])
        var both = frame
        both[frame.count - 2] = 1  // stdin both passed and /dev/null
        XCTAssertThrowsError(try decodeAll(both)) { XCTAssertEqual($0 as? ProtocolError, .invalidValue("null streams")) }
        var joined = frame
        joined[frame.count - 1] = 1  // stderr joins stdout, but stderr is /dev/null
        XCTAssertThrowsError(try decodeAll(joined)) {
            XCTAssertEqual($0 as? ProtocolError, .invalidValue("stderr joins stdout 1"))
        }
    }

    func testRejectsBadHellos() {
        var bad = FrameEncoder.encode(.hello(terminalHello))
        bad[5] = UInt8(ascii: "X")
        XCTAssertThrowsError(try decodeAll(bad)) { XCTAssertEqual($0 as? ProtocolError, .badMagic) }

        var version = FrameEncoder.encode(.hello(terminalHello))
        version[10] = 9
        XCTAssertThrowsError(try decodeAll(version)) { XCTAssertEqual($0 as? ProtocolError, .unsupportedVersion(9)) }

        var limits = Limits()
        limits.maxArguments = 1
        let many = FrameEncoder.encode(.hello(Hello(mode: .stdio(passed: []), login: false, arguments: ["a", "b"], environment: [])))
        var decoder = FrameDecoder(limits: limits)
        decoder.append(many)
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? ProtocolError, .tooMany("arguments", 2)) }

        limits = Limits()
        limits.maxEnvironment = 1
        let environment = FrameEncoder.encode(.hello(Hello(mode: .stdio(passed: []), login: false, arguments: [],
                                                           environment: ["A=1", "B=2"])))
        decoder = FrameDecoder(limits: limits)
        decoder.append(environment)
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? ProtocolError, .tooMany("environment", 2)) }

        limits = Limits()
        limits.maxStringBytes = 4
        let long = FrameEncoder.encode(.hello(Hello(mode: .stdio(passed: []), login: false, arguments: ["12345"],
                                                    environment: [])))
        decoder = FrameDecoder(limits: limits)
        decoder.append(long)
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? ProtocolError, .stringTooLong(5)) }
    }

    func testRejectsUnknownTypeTrailingBytesAndBadValues() {
        XCTAssertThrowsError(try decodeAll([0, 0, 0, 1, 99])) { XCTAssertEqual($0 as? ProtocolError, .unknownFrameType(99)) }
        XCTAssertThrowsError(try decodeAll([0, 0, 0, 2, 3, 0])) { XCTAssertEqual($0 as? ProtocolError, .trailingBytes(.endOfInput)) }
        XCTAssertThrowsError(try decodeAll([0, 0, 0, 3, 2, 7, 1])) { XCTAssertEqual($0 as? ProtocolError, .invalidValue("stream 7")) }
        XCTAssertThrowsError(try decodeAll([0, 0, 0, 0])) { XCTAssertEqual($0 as? ProtocolError, .truncated("frame type")) }
        XCTAssertThrowsError(try decodeAll([0, 0, 0, 5, 5, 0, 0, 1, 0])) { XCTAssertEqual($0 as? ProtocolError, .invalidValue("exit code 256")) }
    }

    /// Random and mutated frames, fixed seed: the decoder must throw or decode, never trap.
    func testFuzzDecoderNeverTraps() {
        var rng = SplitMix64(seed: 0x4a41_494c)
        let corpus = (samples + [.hello(terminalHello)]).map(FrameEncoder.encode)
        var decoded = 0
        var rejected = 0
        for i in 0..<100_000 {
            var frame: [UInt8]
            if i % 4 == 0 {
                frame = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if frame.count >= 4 { frame[0] = 0; frame[1] = 0 }
            } else {
                frame = corpus[Int(rng.next() % UInt64(corpus.count))]
                for _ in 0...(rng.next() % 4) where !frame.isEmpty {
                    let at = Int(rng.next() % UInt64(frame.count))
                    switch rng.next() % 3 {
                    case 0: frame[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 1: frame.removeSubrange(at...)
                    default: frame.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                    }
                }
            }
            var decoder = FrameDecoder()
            decoder.append(frame)
            do {
                while try decoder.next() != nil { decoded += 1 }
            } catch {
                rejected += 1
            }
        }
        XCTAssertGreaterThan(rejected, 10_000)
        XCTAssertGreaterThan(decoded, 1_000)
    }
}

struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
