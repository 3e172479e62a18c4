import JailProtocol
import XCTest

final class EnvironmentPolicyTests: XCTestCase {
    func testDefaultsAcceptTheTerminalLocaleAndGitProtocol() {
        let policy = EnvironmentPolicy()
        for name in ["TERM", "COLORTERM", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "GIT_PROTOCOL", "SSH_CONNECTION"] {
            XCTAssertTrue(policy.accepts(name), name)
        }
        for name in ["SECRET", "LCX", "GIT_DIR", "TERMINFO", "LD_PRELOAD", "PATH", ""] {
            XCTAssertFalse(policy.accepts(name), name)
        }
    }

    func testOperatorPatternsNeverReachWhatTheSessionSets() {
        let policy = EnvironmentPolicy(extra: ["APP_*", "EDITOR", "*"])
        XCTAssertTrue(policy.accepts("APP_MODE"))
        XCTAssertTrue(policy.accepts("EDITOR"))
        XCTAssertTrue(policy.accepts("ANYTHING"))
        for name in ["LD_LIBRARY_PATH", "PATH", "HOME", "SHELL", "USER", "LOGNAME", "SSH_AUTH_SOCK", "JAIL_SOCKET"] {
            XCTAssertFalse(policy.accepts(name), name)
        }
    }

    func testBadPatternsAreNamed() {
        XCTAssertNil(EnvironmentPolicy.problem(with: "APP_*"))
        XCTAssertNil(EnvironmentPolicy.problem(with: "EDITOR"))
        XCTAssertNotNil(EnvironmentPolicy.problem(with: "A*B"))
        XCTAssertNotNil(EnvironmentPolicy.problem(with: "PATH"))
        XCTAssertNotNil(EnvironmentPolicy.problem(with: "LD_PRELOAD"))
        XCTAssertNotNil(EnvironmentPolicy.problem(with: "A-B"))
        XCTAssertNotNil(EnvironmentPolicy.problem(with: ""))
    }
}
