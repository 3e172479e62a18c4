import Foundation
import JailSystem
import XCTest

/// The home directory jaild (rootless) and jail look up when $HOME is unset: parsed from
/// /etc/passwd, not through getpwuid(3), which a static binary cannot serve.
final class PasswdTests: XCTestCase {
    let passwd = """
        root:x:0:0:root:/root:/bin/bash
        # a comment:x:1000:1000::/commented:/bin/sh
        broken line without fields
        nis:x:not-a-number:1:::
        alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
        alias:x:1000:1000::/home/alias:/bin/sh
        nohome:x:1001:1001:::/bin/sh
        +::::::

        """

    func testTheFirstEntryOfTheUIDGivesTheHome() {
        XCTAssertEqual(PasswdEntry.home(ofUID: 0, in: passwd), "/root")
        XCTAssertEqual(PasswdEntry.home(ofUID: 1000, in: passwd), "/home/alice", "getpwuid takes the first entry")
    }

    func testUnknownUIDsEmptyHomesAndMalformedLinesGiveNone() {
        XCTAssertNil(PasswdEntry.home(ofUID: 4242, in: passwd))
        XCTAssertNil(PasswdEntry.home(ofUID: 1001, in: passwd), "an empty home field is no home")
        XCTAssertNil(PasswdEntry.home(ofUID: 1, in: passwd), "a line with a non-numeric uid is skipped")
        XCTAssertNil(PasswdEntry.home(ofUID: 0, in: ""))
        XCTAssertNil(PasswdEntry.home(ofUID: 0, in: "root:x:0:0:root:/root"), "six fields are not an entry")
        // A comment is skipped even where it would parse.
        XCTAssertFalse(PasswdEntry.parseAll(passwd).contains { $0.home == "/commented" })
    }

    func testEntriesAndGroupsAreReadFieldByField() {
        XCTAssertEqual(PasswdEntry.parseAll(passwd).map { "\($0.name) \($0.uid) \($0.gid) \($0.home) \($0.shell)" },
                       ["root 0 0 /root /bin/bash", "alice 1000 1000 /home/alice /bin/bash", "alias 1000 1000 /home/alias /bin/sh",
                        "nohome 1001 1001  /bin/sh"])
        let group = "root:x:0:\n# staff:x:50:bob\n\nusers:x:100:alice,,bob\nbad:x:z:\nshort:x:7\ntty:x:5:"
        XCTAssertEqual(GroupEntry.parseAll(group).map { "\($0.name) \($0.gid) \($0.members)" },
                       ["root 0 []", "users 100 [\"alice\", \"bob\"]", "tty 5 []"])
    }

    func testTheHostsFileIsRead() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("passwd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("passwd").path
        try passwd.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(PasswdEntry.hostHome(ofUID: 1000, passwdPath: path), "/home/alice")
        XCTAssertNil(PasswdEntry.hostHome(ofUID: 1000, passwdPath: directory.appendingPathComponent("missing").path))
    }
}
