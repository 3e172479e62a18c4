import JailProtocol
import XCTest

/// The hello's flags byte (login, root): version 1 clients sent 0 or 1 there, so their hellos
/// still decode; unknown bits are refused.
final class HelloFlagsTests: XCTestCase {
    func hello(login: Bool, root: Bool) -> Hello {
        Hello(mode: .stdio(passed: .all), login: login, arguments: ["-c", "id -u"], environment: [], root: root)
    }

    /// Offset of the flags byte in a hello frame: length 4, type 1, magic 4, version 2.
    let flagsOffset = 11

    func testEveryCombinationRoundTrips() throws {
        for login in [false, true] {
            for root in [false, true] {
                let frame = FrameEncoder.encode(.hello(hello(login: login, root: root)))
                XCTAssertEqual(frame[flagsOffset], (login ? 1 : 0) | (root ? 2 : 0))
                var decoder = FrameDecoder()
                decoder.append(frame)
                XCTAssertEqual(try decoder.next(), .hello(hello(login: login, root: root)))
            }
        }
    }

    func testVersionOneLoginByteStillMeansLogin() throws {
        var frame = FrameEncoder.encode(.hello(hello(login: false, root: false)))
        frame[flagsOffset] = 1
        guard case .hello(let decoded) = try FrameDecoder.decode(frame[4...]) else { return XCTFail() }
        XCTAssertTrue(decoded.login)
        XCTAssertFalse(decoded.root)
    }

    func testUnknownFlagBitsAreRefused() {
        for bad: UInt8 in [0x10, 0x20, 0x80, 0xff, 0x17] {
            var frame = FrameEncoder.encode(.hello(hello(login: false, root: false)))
            frame[flagsOffset] = bad
            XCTAssertThrowsError(try FrameDecoder.decode(frame[4...]), "flags \(bad)")
        }
    }

    func testTruncatedBeforeFlagsIsAnError() {
        let frame = FrameEncoder.encode(.hello(hello(login: true, root: true)))
        XCTAssertThrowsError(try FrameDecoder.decode(frame[4..<flagsOffset]))
    }
}
