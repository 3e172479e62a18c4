import CJail
@testable import JailDaemon
import JailProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class SessionCommandBytesTests: XCTestCase {
    func testBytesReachExecveUnchanged() {
        let account = Account(name: "work", uid: 1000, gid: 1000, groups: [1000], home: "/home/work", shell: "/bin/bash")
        let hello = Hello(mode: .stdio(passed: .all), login: false, argumentBytes: [Array("-c".utf8), [0xff, 0xfe]],
                          environmentBytes: [Array("LANG=".utf8) + [0xe9], [0xff] + Array("=x".utf8)])
        let c = SessionCommand(account: account, hello: hello, terminal: nil)
        XCTAssertEqual(c.argumentBytes, [Array("bash".utf8), Array("-c".utf8), [0xff, 0xfe]])
        XCTAssertTrue(c.environmentBytes.contains(Array("LANG=".utf8) + [0xe9]))
        // A name that is not text matches no pattern.
        XCTAssertFalse(c.environmentBytes.contains { $0.first == 0xff })
        XCTAssertEqual(SessionRecord.command(hello: hello, shell: "/bin/bash"), "\\xff\\xfe")
    }
}
