import JailProtocol
import XCTest

final class X11CookieTests: XCTestCase {
    func testHelloCarriesTheCookie() throws {
        let cookie = X11Cookie(display: "localhost:10.0", protocolName: "MIT-MAGIC-COOKIE-1", data: Array(0..<16))
        let hello = Hello(mode: .stdio(passed: []), login: true, arguments: [], environment: [], x11: cookie)
        var decoder = FrameDecoder()
        decoder.append(FrameEncoder.encode(.hello(hello)))
        XCTAssertEqual(try decoder.next(), .hello(hello))
        XCTAssertEqual(cookie.displayNumber, "10")
        XCTAssertEqual(X11Cookie(display: ":0", protocolName: "", data: []).displayNumber, "0")
        XCTAssertNil(X11Cookie(display: "nohost", protocolName: "", data: []).displayNumber)
    }

    func testOversizedCookieIsRefused() {
        let cookie = X11Cookie(display: "localhost:10.0", protocolName: "MIT-MAGIC-COOKIE-1", data: Array(repeating: 1, count: 257))
        let hello = Hello(mode: .stdio(passed: []), login: true, arguments: [], environment: [], x11: cookie)
        var decoder = FrameDecoder()
        decoder.append(FrameEncoder.encode(.hello(hello)))
        XCTAssertThrowsError(try decoder.next())
    }

    func testXauthorityRoundTripAndChoice() {
        let host = Array("box".utf8)
        let entries = [
            Xauthority.Entry(family: 0, address: [127, 0, 0, 1], number: "10", name: "MIT-MAGIC-COOKIE-1", data: [9]),
            Xauthority.Entry(family: Xauthority.familyLocal, address: Array("other".utf8), number: "10",
                             name: "MIT-MAGIC-COOKIE-1", data: [8]),
            Xauthority.Entry(family: Xauthority.familyLocal, address: host, number: "11", name: "MIT-MAGIC-COOKIE-1", data: [7]),
            Xauthority.Entry(family: Xauthority.familyLocal, address: host, number: "10", name: "MIT-MAGIC-COOKIE-1",
                             data: Array(1...16)),
        ]
        let bytes = Xauthority.encode(entries)
        XCTAssertEqual(Xauthority.parse(bytes), entries)
        XCTAssertEqual(Xauthority.parse(Array(bytes.dropLast(3))), Array(entries.dropLast()))
        XCTAssertEqual(Xauthority.cookie(in: entries, number: "10", hostname: host)?.data, Array(1...16))
        XCTAssertNil(Xauthority.cookie(in: entries, number: "12", hostname: host))
    }
}
