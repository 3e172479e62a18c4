import JailProtocol
import XCTest

final class SocketLocationTests: XCTestCase {
    func testDefaultAndPrefix() {
        let d = SocketLocation(prefix: nil, uid: 61000, gid: 61001)
        XCTAssertEqual(d.socketPath, "/run/jail/jaild-61000-61001.sock")
        XCTAssertEqual(d.pidPath, "/run/jail/jaild-61000-61001.pid")
        XCTAssertEqual(d.directory, "/run/jail")
        let p = SocketLocation(prefix: "/tmp/jaild", uid: 1, gid: 2)
        XCTAssertEqual(p.socketPath, "/tmp/jaild-1-2.sock")
        XCTAssertEqual(SocketLocation(socketPath: "/x/y.sock").pidPath, "/x/y.pid")
    }

    func testUserDirectoryIsNeverInTmp() {
        XCTAssertEqual(SocketLocation.userDirectory(uid: 5, environment: ["XDG_RUNTIME_DIR": "/run/user/5", "HOME": "/h"]),
                       "/run/user/5/jail")
        XCTAssertEqual(SocketLocation.userDirectory(uid: 5, environment: ["HOME": "/home/u/"]), "/home/u/.local/state/jail/sockets")
        XCTAssertEqual(SocketLocation.userDirectory(uid: 5, environment: ["XDG_RUNTIME_DIR": "relative", "HOME": "/h"]),
                       "/h/.local/state/jail/sockets")
        XCTAssertFalse(SocketLocation.userDirectory(uid: 5, environment: [:]).hasPrefix("/tmp"))
    }
}
