@testable import JailDaemon
import XCTest

final class OptionParsingTests: XCTestCase {
    func testSizesCapabilitiesAndRlimits() throws {
        XCTAssertEqual(ByteSize.parse("512M"), 512 << 20)
        XCTAssertEqual(ByteSize.parse("1.5G"), 3 << 29)
        XCTAssertEqual(ByteSize.parse("4096"), 4096)
        XCTAssertNil(ByteSize.parse("lots"))
        XCTAssertNil(ByteSize.parse("-1M"))
        XCTAssertEqual(try Capability.parse("cap_net_bind_service"), 10)
        XCTAssertThrowsError(try Capability.parse("SYS_ADMIN"))
        XCTAssertEqual(try ResourceLimit.parse("nofile=64:128"), ResourceLimit(name: "nofile", resource: 7, soft: 64, hard: 128))
        XCTAssertEqual(try ResourceLimit.parse("core=unlimited").hard, UInt64.max)
        XCTAssertThrowsError(try ResourceLimit.parse("nofile=9:8"))
        XCTAssertThrowsError(try ResourceLimit.parse("bogus=1"))
    }

    func testConfigFileLinesKeysAndErrors() throws {
        let text = "# a jail\nuid = 61000\n\n  # an indented comment\n; another\nmount = /data=/srv/data:ro\nforeground = yes\n"
            + "boot = echo hi\nboot = echo a#b # c\n"
        let entries = try ConfigFile.parse(text, path: "/etc/jail/x.conf")
        XCTAssertEqual(entries.map(\.line), [2, 6, 7, 8, 9])
        // A comment starts a line only (systemd's rule): a `#` inside a value is the value's.
        XCTAssertEqual(try entries.flatMap { try ConfigFile.arguments(for: $0, path: "x") },
                       ["--uid", "61000", "--mount", "/data=/srv/data:ro", "--foreground", "--boot", "echo hi",
                        "--boot", "echo a#b # c"])
        let services = try ConfigFile.parse("rc = /bin/sh /etc/rc.jail\nrc-stop = /etc/rc.stop\nrc-timeout = 30\nrc-required = yes\n",
                                            path: "f")
        XCTAssertEqual(try services.flatMap { try ConfigFile.arguments(for: $0, path: "f") },
                       ["--rc", "/bin/sh /etc/rc.jail", "--rc-stop", "/etc/rc.stop", "--rc-timeout", "30", "--rc-required"])
        let forwarding = try ConfigFile.parse("forward-agent = no\nforward-x11 = yes\n", path: "f")
        XCTAssertEqual(try forwarding.flatMap { try ConfigFile.arguments(for: $0, path: "f") },
                       ["--no-forward-agent", "--forward-x11"])
        XCTAssertThrowsError(try ConfigFile.parse("uid = 1\nbogus = 2\n", path: "f")) {
            XCTAssertTrue("\($0)".hasPrefix("f:2: unknown key 'bogus'"))
        }
        XCTAssertThrowsError(try ConfigFile.parse("root\n", path: "f")) { XCTAssertTrue("\($0)".hasPrefix("f:1: expected")) }
        XCTAssertThrowsError(try ConfigFile.arguments(for: .init(line: 3, key: "foreground", value: "maybe"), path: "f")) {
            XCTAssertEqual("\($0)", "f:3: 'foreground' is yes or no, not 'maybe'")
        }
    }

    func testStateFileRoundTrip() {
        let state = JailState(socket: "/run/jail/jaild-1-1.sock", pidFile: "/run/jail/jaild-1-1.pid", uid: 1, gid: 1,
                              root: "/srv/a=b", supervisor: 10, initPid: 11, started: 1_700_000_000, cgroup: "", ports: "tcp:25")
        XCTAssertEqual(JailState.decode(state.encoded()), state)
        XCTAssertNil(JailState.decode("socket=/x\n"))
        var withRC = state
        withRC.rcStatus = 4
        XCTAssertEqual(JailState.decode(withRC.encoded()), withRC)
        XCTAssertNil(JailState.decode(state.encoded())?.rcStatus)
    }
}
