@testable import JailDaemon
import Foundation
import XCTest

/// The host side of a tenant's ssh (issue 27, item 3): the key options and the sshd drop-in.
final class SshdAccessTests: XCTestCase {
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7x alice@laptop"

    func testKeysLeadWithRestrictAndWhatTheJailServes() {
        XCTAssertEqual(SshdAccess.keyOptions(forwardAgent: true, forwardX11: false), "restrict,pty,agent-forwarding")
        XCTAssertEqual(SshdAccess.keyOptions(forwardAgent: false, forwardX11: false), "restrict,pty")
        XCTAssertEqual(SshdAccess.keyOptions(forwardAgent: true, forwardX11: true), "restrict,pty,agent-forwarding,X11-forwarding")
        XCTAssertEqual(SshdAccess.restrictedKeys(key + "\n" + key + "\n", forwardAgent: true, forwardX11: false),
                       "restrict,pty,agent-forwarding \(key)\nrestrict,pty,agent-forwarding \(key)\n")
    }

    func testTheKeysOwnOptionsStayAfterRestrict() {
        let line = #"from="10.0.0.1,192.0.2.7",expiry-time="20300101" "# + key
        XCTAssertEqual(SshdAccess.restrictedKeys(line, forwardAgent: false, forwardX11: false),
                       #"restrict,pty,from="10.0.0.1,192.0.2.7",expiry-time="20300101" "# + key + "\n")
        let (options, rest) = SshdAccess.splitOptions(#"command="echo \"a b\", c" "# + key)
        XCTAssertEqual(options, [#"command="echo \"a b\", c""#])
        XCTAssertEqual(String(rest), key)
        XCTAssertNil(SshdAccess.grantingOption(in: line[...]))
        XCTAssertNil(SshdAccess.grantingOption(in: key[...]))
    }

    func testOptionsThatUndoRestrictAreFound() {
        for option in ["port-forwarding", "permitlisten=\"127.0.0.1:80\"", "PermitOpen=\"*:*\"", "tunnel=\"0\"", "user-rc",
                       "X11-forwarding", "agent-forwarding", "pty"] {
            XCTAssertNotNil(SshdAccess.grantingOption(in: "no-pty,\(option) \(key)"[...]), option)
        }
        // A quoted value is not an option of its own.
        XCTAssertNil(SshdAccess.grantingOption(in: #"command="x,port-forwarding" "# + key))
    }

    func testTheDropInIsTheShippedFile() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let shipped = try String(contentsOf: repository.appendingPathComponent("contrib/sshd/jail.conf"), encoding: .utf8)
        XCTAssertEqual(SshdAccess.dropIn, shipped)
        let role = "contrib/ansible/ansible_collections/jail/hosting/roles/jail_host/files/sshd-jail.conf"
        XCTAssertEqual(try String(contentsOf: repository.appendingPathComponent(role), encoding: .utf8), shipped)
        XCTAssertTrue(shipped.contains("\nMatch Group \(SshdAccess.tenantGroup)\n"))
    }

    func testInstallNeverOverwrites() throws {
        let directory = NSTemporaryDirectory() + "jail-dropin-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/jail.conf"
        XCTAssertEqual(try SshdAccess.installDropIn(in: directory), .installed(path))
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), SshdAccess.dropIn)
        XCTAssertEqual(try SshdAccess.installDropIn(in: directory), .present(path))
        try "Match Group jail\n    AllowTcpForwarding yes\n".write(toFile: path, atomically: false, encoding: .utf8)
        XCTAssertEqual(try SshdAccess.installDropIn(in: directory), .differs(path))
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "Match Group jail\n    AllowTcpForwarding yes\n")
        XCTAssertEqual(try SshdAccess.installDropIn(in: directory + "/none"), .noDirectory(directory + "/none"))
        XCTAssertNotNil(SshdAccess.notice(.differs(path), name: "alice"))
    }

    func testSwitchesAsTheConfigReadsThem() {
        var r = JailCreation(name: "a", uid: 63000, base: "b", jailBinary: "/j")
        XCTAssertTrue(r.isOn("forward-agent"))
        XCTAssertFalse(r.isOn("forward-x11"))
        r.options = [("forward-x11", "yes"), ("forward-agent", "no")]
        XCTAssertTrue(r.isOn("forward-x11"))
        XCTAssertFalse(r.isOn("forward-agent"))
    }
}
