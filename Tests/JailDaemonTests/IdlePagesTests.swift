import CJail
@testable import JailDaemon
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
        pages.afterWait(woke: false)  // a quiet second: released
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
        XCTAssertEqual(String(describing: IdlePages.self), "IdlePages")
    }
}
