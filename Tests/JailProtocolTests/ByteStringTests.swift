import JailProtocol
import XCTest

final class ByteStringTests: XCTestCase {
    func testArgumentsAndEnvironmentTravelAsBytes() throws {
        // Latin-1, a lone continuation byte, a newline and a space: none of it is changed.
        let name: [UInt8] = [0x66, 0xe9, 0x80, 0xff, 0xfe, 0x0a, 0x20, 0x78]
        let hello = Hello(mode: .stdio(passed: []), login: false, argumentBytes: [Array("-c".utf8), name],
                          environmentBytes: [Array("LC_X=".utf8) + [0xff]])
        var decoder = FrameDecoder()
        decoder.append(FrameEncoder.encode(.hello(hello)))
        guard case .hello(let back)? = try decoder.next() else { return XCTFail("no hello") }
        XCTAssertEqual(back.argumentBytes, [Array("-c".utf8), name])
        XCTAssertEqual(back.environmentBytes, [Array("LC_X=".utf8) + [0xff]])
    }

    func testNULIsStillRefused() {
        let hello = Hello(mode: .stdio(passed: []), login: false, argumentBytes: [[0x61, 0, 0x62]], environmentBytes: [])
        var decoder = FrameDecoder()
        decoder.append(FrameEncoder.encode(.hello(hello)))
        XCTAssertThrowsError(try decoder.next())
    }

    func testDisplayEscapesInvalidUTF8() {
        XCTAssertEqual(ByteText.display([0xff, 0xfe]), "\\xff\\xfe")
        XCTAssertEqual(ByteText.display(Array("héllo".utf8)), "héllo")
        XCTAssertEqual(ByteText.display([0x61, 0xc3, 0x62]), "a\\xc3b")
        XCTAssertEqual(ByteText.display([]), "")
    }
}
