import CJail
@testable import JailClient
import SystemPackage
import XCTest

/// The client takes from the `terminal` frame exactly one descriptor, and only a pty master;
/// whatever else came is closed.
final class PassedMasterTests: XCTestCase {
    func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) >= 0 }

    /// A pty of the host's /dev/ptmx, unlocked; and its slave's path.
    func openPty() -> (master: Int32, slavePath: String) {
        var name = [CChar](repeating: 0, count: 128)
        let fd = cj_open_pty_master(&name, name.count)
        XCTAssertGreaterThanOrEqual(fd, 0)
        return (fd, String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    func openMaster() -> Int32 { openPty().master }

    func testAPtyMasterIsTaken() throws {
        let master = openMaster()
        let taken = try PassedMaster.check([master])
        XCTAssertEqual(taken.rawValue, master)
        XCTAssertTrue(isOpen(master))
        close(master)
    }

    func testAPipeIsRefusedAndClosed() {
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        XCTAssertThrowsError(try PassedMaster.check([ends[0]])) {
            XCTAssertEqual("\($0)", "the session's terminal frame carried a pipe, not a pty master")
        }
        XCTAssertFalse(isOpen(ends[0]))
        close(ends[1])
    }

    func testDevNullIsRefusedAndClosed() {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        XCTAssertThrowsError(try PassedMaster.check([null]))
        XCTAssertFalse(isOpen(null))
    }

    func testAPtySlaveIsRefused() {
        let (master, path) = openPty()
        let slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(slave, 0)
        XCTAssertThrowsError(try PassedMaster.check([slave])) {
            XCTAssertEqual("\($0)", "the session's terminal frame carried a terminal, not a pty master")
        }
        XCTAssertFalse(isOpen(slave))
        close(master)
    }

    func testNoneOrTwoAreRefusedAndAllAreClosed() {
        XCTAssertThrowsError(try PassedMaster.check([]))
        let first = openMaster()
        let second = openMaster()
        XCTAssertThrowsError(try PassedMaster.check([first, second])) {
            XCTAssertEqual("\($0)", "the session's terminal frame carried 2 descriptors, not one pty master")
        }
        XCTAssertFalse(isOpen(first))
        XCTAssertFalse(isOpen(second))
    }
}
