import CJail
@testable import JailDaemon
import JailProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class AccountTests: XCTestCase {
    let passwd = """
        root:x:0:0:root:/root:/bin/bash
        # a comment
        broken line
        work:x:61000:61000:Work:/home/work:/bin/bash
        alias:x:61000:61000::/home/alias:
        other:x:61001:100:x:/home/other:/bin/sh
        """
    let group = """
        root:x:0:
        tty:x:5:
        users:x:100:work,other
        dev:x:200:other,work
        work:x:61000:
        """

    func testResolvesByUIDWithSupplementaryGroups() throws {
        let a = try Account.resolve(JailConfiguration(uid: 61000), passwd: passwd, group: group)
        XCTAssertEqual(a, Account(name: "work", uid: 61000, gid: 61000, groups: [61000, 100, 200], home: "/home/work", shell: "/bin/bash"))
    }

    func testNameOverrideAndDefaults() throws {
        var c = JailConfiguration(uid: 61000)
        c.userName = "alias"
        c.gid = 7
        let a = try Account.resolve(c, passwd: passwd, group: group)
        XCTAssertEqual(a.name, "alias")
        XCTAssertEqual(a.shell, "/bin/sh")
        XCTAssertEqual(a.groups, [7])
        c.userName = "other"
        XCTAssertThrowsError(try Account.resolve(c, passwd: passwd, group: group)) {
            XCTAssertEqual($0 as? Account.LookupError, .nameMismatch("other", 61000))
        }
    }

    func testRootAndUnknownUsersAreRefused() {
        XCTAssertThrowsError(try Account.resolve(JailConfiguration(uid: 0), passwd: passwd, group: group)) {
            XCTAssertEqual($0 as? Account.LookupError, .rootNotAllowed)
        }
        XCTAssertThrowsError(try Account.resolve(JailConfiguration(uid: 5), passwd: passwd, group: group)) {
            XCTAssertEqual($0 as? Account.LookupError, .unknownUser(5))
        }
    }

    func testShellOverride() throws {
        var c = JailConfiguration(uid: 61001)
        c.shell = "/bin/zsh"
        XCTAssertEqual(try Account.resolve(c, passwd: passwd, group: group).shell, "/bin/zsh")
    }
}

extension AccountTests {
    func testHostAccountsWhoseNameTheJailLacks() {
        let host = """
        root:x:0:0:root:/root:/bin/bash
        centos:x:61000:61000::/srv/jails/centos/home/work:/usr/local/bin/jail
        work:x:61000:61000::/home/work:/usr/local/bin/jail
        other:x:61000:61000::/home/other:/bin/bash
        debian:x:61001:61001::/x:/usr/local/bin/jail
        """
        let jail = "root:x:0:0:root:/root:/bin/sh\nwork:x:61000:61000:work:/home/work:/bin/sh\n"
        XCTAssertEqual(Preflight.hostNamesMissingInJail(hostPasswd: host, jailPasswd: jail, uid: 61000), ["centos"])
        XCTAssertEqual(Preflight.hostNamesMissingInJail(hostPasswd: host, jailPasswd: jail + "centos:x:61000:61000::/home/work:/bin/sh\n",
                                                        uid: 61000), [])
        XCTAssertEqual(Preflight.hostNamesMissingInJail(hostPasswd: host, jailPasswd: jail, uid: 61002), [])
    }
}
