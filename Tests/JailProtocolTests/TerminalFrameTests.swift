import JailProtocol
import XCTest

/// The `terminal` frame (version 3): the pty master travels with it, so it has no payload;
/// the frame type 4 of the old `windowSize` is gone.
final class TerminalFrameTests: XCTestCase {
    func testTerminalFrameIsTypeTenWithoutPayload() throws {
        let frame = FrameEncoder.encode(.terminal)
        XCTAssertEqual(frame, [0, 0, 0, 1, 10])
        var decoder = FrameDecoder()
        decoder.append(frame)
        XCTAssertEqual(try decoder.next(), .terminal)
        XCTAssertNil(try decoder.next())
        XCTAssertEqual(Message.terminal.type, .terminal)
    }

    func testTerminalFrameWithPayloadIsRefused() {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 2, 10, 0])
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? ProtocolError, .trailingBytes(.terminal)) }
    }

    func testTheOldWindowSizeFrameIsUnknown() {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 5, 4, 0, 24, 0, 80])
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? ProtocolError, .unknownFrameType(4)) }
    }

    func testVersionTwoHellosAreRefused() {
        let modes = TerminalModes(inputFlags: 0, outputFlags: 0, controlFlags: 0, localFlags: 0,
                                  controlCharacters: [], inputSpeed: 0, outputSpeed: 0)
        let old = Hello(version: 2, mode: .terminal(modes, WindowSize(rows: 24, columns: 80)), login: true,
                        arguments: [], environment: [])
        var decoder = FrameDecoder()
        decoder.append(FrameEncoder.encode(.hello(old)))
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? ProtocolError, .unsupportedVersion(2)) }
        XCTAssertEqual(Protocol.version, 3)
    }
}
