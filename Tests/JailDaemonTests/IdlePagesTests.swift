import CJail
@testable import JailDaemon
import JailIO
import JailProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class IdlePagesTests: XCTestCase {
    func testWaitsABitWhileUsedThenForeverOnceReleased() {
        var pages = IdlePages()
        XCTAssertEqual(pages.timeout(-1), IdlePages.delayMilliseconds)
        XCTAssertEqual(pages.timeout(200), 200, "a sooner deadline of the loop's own wins")
        pages.afterWait(woke: true)
        XCTAssertEqual(pages.timeout(-1), IdlePages.delayMilliseconds)
        XCTAssertFalse(pages.releasesBeforeNextWait)
        pages.afterWait(woke: false)  // a quiet second: released in the next wait
        XCTAssertTrue(pages.releasesBeforeNextWait)
        XCTAssertEqual(pages.timeout(-1), -1)
        XCTAssertEqual(pages.timeout(300), 300)
        pages.afterWait(woke: true)
        XCTAssertEqual(pages.timeout(-1), IdlePages.delayMilliseconds)
    }

    func testReleasingKeepsWrittenDataAndCode() {
        // Pages this process wrote must survive; code and read-only data come back on use.
        var table = [Int](repeating: 0, count: 4096)
        for i in table.indices { table[i] = i &* 7 }
        cj_release_file_pages()
        XCTAssertEqual(table.reduce(0, &+), (0..<4096).reduce(0) { $0 &+ $1 &* 7 })
    }

    func testThePollThatReleasesFirstStillPolls() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        var entry = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(cj_poll_releasing_file_pages(&entry, 1, 0), 0, "nothing to read: a timeout")
        XCTAssertEqual(write(fds[1], "x", 1), 1)
        XCTAssertEqual(cj_poll_releasing_file_pages(&entry, 1, 5000), 1)
        XCTAssertNotEqual(entry.revents & Int16(POLLIN), 0)
        var byte: UInt8 = 0
        XCTAssertEqual(read(fds[0], &byte, 1), 1)
        XCTAssertEqual(byte, UInt8(ascii: "x"))
    }

    func testAnIdleWaitReleasesThenSleepsAndWakes() {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        var pages = IdlePages()
        var poller = Poller()
        poller.add(fds[0], read: true)
        pages.afterWait(woke: false)
        XCTAssertTrue(pages.releasesBeforeNextWait)
        XCTAssertEqual(write(fds[1], "y", 1), 1)
        XCTAssertEqual(pages.wait(&poller, timeout: -1), true)
        XCTAssertTrue(poller.readable(0))
        XCTAssertFalse(pages.releasesBeforeNextWait)
    }
}
