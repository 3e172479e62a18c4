import JailClient
import JailProtocol
import XCTest

final class InvocationTests: XCTestCase {
    func testLoginShellArgv() {
        XCTAssertEqual(Invocation(argv: ["-jail"]), Invocation(login: true, arguments: []))
        XCTAssertEqual(Invocation(argv: ["-jail", "-c", "id"]).login, true)
        XCTAssertEqual(Invocation(argv: ["jail", "-c", "id"]), Invocation(login: false, arguments: ["-c", "id"]))
        // No arguments at all: an interactive login, as ssh gives.
        XCTAssertEqual(Invocation(argv: ["/usr/bin/jail"]).login, true)
    }

    func testSocketFromEnvironment() {
        XCTAssertEqual(Invocation.socketLocation(environment: [:], uid: 5, gid: 6).socketPath, "/run/jail/jaild-5-6.sock")
        XCTAssertEqual(Invocation.socketLocation(environment: ["SOCKET": "/tmp/j"], uid: 5, gid: 6).socketPath, "/tmp/j-5-6.sock")
        XCTAssertEqual(Invocation.socketLocation(environment: ["SOCKET": "/tmp/j", "JAIL_SOCKET": "/x.sock"], uid: 5, gid: 6).socketPath, "/x.sock")
    }

    func testOfferedEnvironment() {
        let env = ["TERM": "xterm", "LC_CTYPE": "C", "SECRET": "x", "SSH_CLIENT": "1 2 3"]
        XCTAssertEqual(Invocation.offeredEnvironment(env), ["LC_CTYPE=C", "SSH_CLIENT=1 2 3", "TERM=xterm"])
    }
}
