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

    func testRootlessJailIsFoundWhenNoSystemJailRuns() {
        let user = "/run/user/5/jail/jaild-5-6.sock"
        let environment = ["XDG_RUNTIME_DIR": "/run/user/5"]
        XCTAssertEqual(Invocation.socketLocation(environment: environment, uid: 5, gid: 6, exists: { $0 == user }).socketPath, user)
        // A system jail for the uid wins; without either, the system path is the one named in errors.
        XCTAssertEqual(Invocation.socketLocation(environment: environment, uid: 5, gid: 6, exists: { _ in true }).socketPath,
                       "/run/jail/jaild-5-6.sock")
        XCTAssertEqual(Invocation.socketLocation(environment: [:], uid: 5, gid: 6, exists: { _ in false }).socketPath,
                       "/run/jail/jaild-5-6.sock")
        // Without a runtime directory: below the home, never a predictable /tmp path.
        XCTAssertEqual(Invocation.socketLocation(environment: ["HOME": "/home/u"], uid: 5, gid: 6,
                                                 exists: { $0.hasPrefix("/home/u/.local/state/jail/sockets/") }).socketPath,
                       "/home/u/.local/state/jail/sockets/jaild-5-6.sock")
    }

    func testOfferedEnvironment() {
        // Anything a policy could accept is offered; what the session sets itself never is.
        let env = ["TERM": "xterm", "LC_CTYPE": "C", "GIT_PROTOCOL": "version=2", "LD_PRELOAD": "/x.so",
                   "PATH": "/host/bin", "HOME": "/root", "SSH_CLIENT": "1 2 3"]
        XCTAssertEqual(Invocation.offeredEnvironment(env),
                       ["GIT_PROTOCOL=version=2", "LC_CTYPE=C", "SSH_CLIENT=1 2 3", "TERM=xterm"])
    }
}
