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

final class BindMountTests: XCTestCase {
    func testParse() throws {
        XCTAssertEqual(try BindMount.parse("/data=/srv/data"), BindMount(jailPath: "/data", hostPath: "/srv/data", readOnly: false))
        XCTAssertEqual(try BindMount.parse("/a//b/=/srv/x:ro"), BindMount(jailPath: "/a/b", hostPath: "/srv/x", readOnly: true))
        XCTAssertEqual(try BindMount.parse("/a=/h:rw").readOnly, false)
        XCTAssertThrowsError(try BindMount.parse("/a")) { XCTAssertEqual($0 as? BindMount.ParseError, .missingEquals("/a")) }
        XCTAssertThrowsError(try BindMount.parse("a=/b")) { XCTAssertEqual($0 as? BindMount.ParseError, .notAbsolute("a")) }
        XCTAssertThrowsError(try BindMount.parse("/a=/b:xx")) { XCTAssertEqual($0 as? BindMount.ParseError, .unknownOption("xx")) }
    }
}

final class MountPlanTests: XCTestCase {
    func testRootPlanOrder() {
        var c = JailConfiguration(uid: 61000)
        c.root = "/srv/jail/"
        c.mounts = [BindMount(jailPath: "/data", hostPath: "/srv/data", readOnly: true)]
        let steps = MountPlan(configuration: c).steps
        XCTAssertEqual(steps.first, .makePrivate)
        XCTAssertEqual(steps.last, .pivot("/srv/jail"))
        XCTAssertEqual(steps[1], .mount(source: "/srv/jail", target: "/srv/jail", type: "", flags: UInt(MS_BIND | MS_REC), data: nil))
        XCTAssertTrue(steps.contains(.mount(source: "sysfs", target: "/srv/jail/sys", type: "sysfs",
                                            flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY), data: nil)))
        XCTAssertTrue(steps.contains(.makeCharacterDevice("/srv/jail/dev/urandom", major: 1, minor: 9)))
        XCTAssertTrue(steps.contains(.symlink(target: "pts/ptmx", at: "/srv/jail/dev/ptmx")))
        XCTAssertEqual(steps[steps.count - 2], .bind(host: "/srv/data", target: "/data", root: "/srv/jail", readOnly: true))
        // No host device is ever bound into the jail.
        for case .bind(let host, _, _, _) in steps { XCTAssertFalse(host.hasPrefix("/dev")) }
        let devpts = steps.first { if case .mount(_, "/srv/jail/dev/pts", _, _, _) = $0 { true } else { false } }
        guard case .mount(_, _, "devpts", _, let data)? = devpts else { return XCTFail("no devpts") }
        XCTAssertTrue(data?.contains("newinstance") == true)
    }

    func testNoRootPlanOnlyRemountsProc() {
        let steps = MountPlan(configuration: JailConfiguration(uid: 61000)).steps
        XCTAssertEqual(steps, [.makePrivate, .mount(source: "proc", target: "/proc", type: "proc",
                                                    flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), data: nil)])
    }
}

final class SessionCommandTests: XCTestCase {
    let account = Account(name: "work", uid: 61000, gid: 61000, groups: [61000], home: "/home/work", shell: "/bin/bash")

    func testLoginShellArgvAndFilteredEnvironment() {
        let hello = Hello(mode: .stdio(passed: .all), login: true, arguments: ["-c", "id"],
                          environment: ["TERM=xterm", "LC_ALL=C", "SSH_TTY=/dev/pts/9", "LD_PRELOAD=/x.so", "HOME=/root", "PATH=/evil"])
        let c = SessionCommand(account: account, hello: hello, terminal: "/dev/pts/0")
        XCTAssertEqual(c.path, "/bin/bash")
        XCTAssertEqual(c.arguments, ["-bash", "-c", "id"])
        XCTAssertEqual(c.environment, [
            "HOME=/home/work", "USER=work", "LOGNAME=work", "SHELL=/bin/bash", "PATH=/usr/local/bin:/usr/bin:/bin",
            "TERM=xterm", "LC_ALL=C", "SSH_TTY=/dev/pts/0",
        ])
    }

    func testNonLoginAndNoTerminalDropsSSHTTY() {
        let hello = Hello(mode: .stdio(passed: .all), login: false, arguments: ["-c", "true"], environment: ["SSH_TTY=/dev/pts/1"])
        let c = SessionCommand(account: account, hello: hello, terminal: nil)
        XCTAssertEqual(c.arguments, ["bash", "-c", "true"])
        XCTAssertFalse(c.environment.contains { $0.hasPrefix("SSH_TTY=") })
    }
}

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
