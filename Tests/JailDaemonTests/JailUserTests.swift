@testable import JailDaemon
import XCTest

final class JailUserTests: XCTestCase {
    let user = JailUser(name: "work", uid: 63000, gid: 63000, home: "/home/work", shell: "/bin/sh")

    func testReplacesTheBasesEntryAndKeepsTheRest() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nwork:x:61000:61000:work:/home/work:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n"
        XCTAssertEqual(user.passwd(passwd),
                       "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nwork:x:63000:63000:work:/home/work:/bin/sh\n")
        // A prefix of the name is another user.
        XCTAssertEqual(user.passwd("worker:x:1:1::/:/bin/sh"), "worker:x:1:1::/:/bin/sh\nwork:x:63000:63000:work:/home/work:/bin/sh\n")
        XCTAssertEqual(user.passwd(""), "work:x:63000:63000:work:/home/work:/bin/sh\n")
    }

    func testTheHostNameIsAnAliasAfterTheUser() {
        let text = user.alias("alice").passwd(user.passwd("root:x:0:0::/root:/bin/sh\nalice:x:5:5::/:/bin/sh\n"))
        XCTAssertEqual(text, "root:x:0:0::/root:/bin/sh\nwork:x:63000:63000:work:/home/work:/bin/sh\n"
                             + "alice:x:63000:63000:alice:/home/work:/bin/sh\n")
        XCTAssertNoThrow(try user.checkConflicts(passwd: "alice:x:63000:1::/:/bin/sh\n", aliases: ["alice"]))
        XCTAssertThrowsError(try user.checkConflicts(passwd: "daemon:x:1:1::/:/bin/sh\n", aliases: ["daemon"]))
    }

    func testGroupIsMadeUnlessTheGidHasOne() {
        XCTAssertEqual(user.group("root:x:0:\nwork:x:61000:\nusers:x:100:work\n"),
                       "root:x:0:\nusers:x:100:work\nwork:x:63000:\n")
        let shared = JailUser(name: "work", uid: 63000, gid: 100, home: "/home/work", shell: "/bin/sh")
        XCTAssertEqual(shared.group("root:x:0:\nusers:x:100:\n"), "root:x:0:\nusers:x:100:\n")
        XCTAssertFalse(shared.ownsGroup("users:x:100:\n"))
        XCTAssertTrue(user.ownsGroup("users:x:100:\n"))
    }

    func testShadowIsLocked() {
        XCTAssertEqual(user.shadow("root:*:19000:0:99999:7:::\nwork:$6$x:1:0:99999:7:::\n", today: 20000),
                       "root:*:19000:0:99999:7:::\nwork:!:20000:0:99999:7:::\n")
        XCTAssertEqual(user.gshadow("work:!::\n"), "work:!::\n")
    }

    func testAnotherUserWithTheUidIsAConflict() {
        XCTAssertThrowsError(try user.checkConflicts(passwd: "alice:x:63000:63000::/:/bin/sh\n"))
        XCTAssertNoThrow(try user.checkConflicts(passwd: "work:x:63000:1::/:/bin/sh\nbob:x:61000:1::/:/bin/sh\n"))
        let root = JailUser(name: "root", uid: 63000, gid: 63000, home: "/root", shell: "/bin/sh")
        XCTAssertThrowsError(try root.checkConflicts(passwd: "root:x:0:0::/root:/bin/sh\n"))
    }
}
