import XCTest

@testable import JailDaemon

final class SpareHandOffTests: XCTestCase {
    func testRoundTrip() {
        for handOff in [SpareHandOff(id: 1, hostRoot: false), SpareHandOff(id: 123_456_789_012, hostRoot: true)] {
            XCTAssertEqual(handOff.bytes.count, 9)
            XCTAssertEqual(SpareHandOff(bytes: handOff.bytes), handOff)
        }
    }

    func testAnythingElseIsRefused() {
        let good = SpareHandOff(id: 7, hostRoot: true).bytes
        XCTAssertNil(SpareHandOff(bytes: []))
        XCTAssertNil(SpareHandOff(bytes: Array(good.dropLast())))
        XCTAssertNil(SpareHandOff(bytes: good + [0]))
        XCTAssertNil(SpareHandOff(bytes: Array(good.dropLast()) + [2]), "the flag byte is 0 or 1")
        XCTAssertNil(SpareHandOff(bytes: [UInt8](repeating: 0, count: 8) + [0]), "session numbers start at 1")
        XCTAssertNil(SpareHandOff(bytes: [UInt8](repeating: 0xff, count: 8) + [0]), "beyond Int.max")
    }
}
