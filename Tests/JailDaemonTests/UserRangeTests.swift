@testable import JailDaemon
import XCTest

final class UserRangeTests: XCTestCase {
    func testMapKeepsTheUserAndPutsEveryOtherIdInTheRange() {
        XCTAssertEqual(UserRange.mapLines(keeping: 61000, start: 1_048_576),
                       "0 1048576 61000\n61000 61000 1\n61001 1109577 4535\n")
        // gid 0: no empty first line.
        XCTAssertEqual(UserRange.mapLines(keeping: 0, start: 1_048_576), "0 0 1\n1 1048577 65535\n")
        XCTAssertEqual(UserRange.mapLines(keeping: 65535, start: 1_048_576), "0 1048576 65535\n65535 65535 1\n")
        // Above 65535: all of 0–65535 in the range, the user beside it.
        XCTAssertEqual(UserRange.mapLines(keeping: 100_000, start: 1_048_576), "0 1048576 65536\n100000 100000 1\n")
    }

    func testHostIdsInUseComeFromAccountsAndSubordinateRanges() {
        let used = UserRange.hostIDsInUse(passwd: "root:x:0:0::/root:/bin/sh\nbig:x:1200000:1200000::/:/bin/sh\n",
                                          group: "wheel:x:10:\n", subuid: "alice:100000:65536\n",
                                          subgid: "bob:2000000:10\nbroken line\n", ids: [61000])
        XCTAssertEqual(Set(used), [61000...61000, 0...0, 1_200_000...1_200_000, 10...10, 100_000...165_535,
                                   2_000_000...2_000_009])
    }

    func testChoiceSkipsTakenSlotsAndSlotsWithHostIds() {
        let pool = UserRangePool(start: 1 << 20, count: 4 << 16)
        XCTAssertEqual(pool.slots, [1_048_576, 1_114_112, 1_179_648, 1_245_184])
        XCTAssertEqual(UserRange.choose(pool: pool, inUse: [], taken: []), 1_048_576)
        // The first slot belongs to a jail, the second holds a host account's uid.
        XCTAssertEqual(UserRange.choose(pool: pool, inUse: [1_120_000...1_120_000], taken: [1_048_576]), 1_179_648)
        // A subuid range over the last two: nothing left.
        XCTAssertNil(UserRange.choose(pool: pool, inUse: [1_179_000...1_300_000, 1_114_112...1_114_112],
                                      taken: [1_048_576]))
    }

    func testPoolParsing() throws {
        XCTAssertEqual(try UserRangePool.parse("2097152:131072"), UserRangePool(start: 2_097_152, count: 131_072))
        XCTAssertThrowsError(try UserRangePool.parse("2097152"))
        XCTAssertThrowsError(try UserRangePool.parse("2097152:1000"))
        XCTAssertThrowsError(try UserRangePool.parse("4294901760:131072"))
        XCTAssertThrowsError(try UserRangePool.parse("0:65536"))
    }
}
