import CJail
@testable import JailDaemon
import JailProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

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

extension SessionCommandTests {
    func testAcceptEnvAddsNamesButNeverTheSessionsOwn() {
        let hello = Hello(mode: .stdio(passed: .all), login: false, arguments: [],
                          environment: ["GIT_PROTOCOL=version=2", "APP_MODE=x", "OTHER=y", "HOME=/root"])
        let c = SessionCommand(account: account, hello: hello, terminal: nil, policy: EnvironmentPolicy(extra: ["APP_*"]))
        XCTAssertTrue(c.environment.contains("GIT_PROTOCOL=version=2"))
        XCTAssertTrue(c.environment.contains("APP_MODE=x"))
        XCTAssertFalse(c.environment.contains("OTHER=y"))
        XCTAssertEqual(c.environment.filter { $0.hasPrefix("HOME=") }, ["HOME=/home/work"])
    }
}
