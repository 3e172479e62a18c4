@testable import JailDaemon
import JailSystem
import XCTest

final class ProvisionPathsTests: XCTestCase {
    func testJailNamesAreAccountNames() {
        for good in ["alice", "jt-p00", "_svc", "a1"] { XCTAssertTrue(ProvisionPaths.isValidName(good), good) }
        for bad in ["", "Alice", "1a", "-a", "a/b", "a.b", "bases", "home", String(repeating: "a", count: 33), "a b", "é"] {
            XCTAssertFalse(ProvisionPaths.isValidName(bad), bad)
        }
    }

    func testLayoutAndOverlayLayers() {
        let paths = ProvisionPaths(configDirectory: "/etc/jail", stateDirectory: "/var/lib/jail")
        XCTAssertEqual(paths.config("alice"), "/etc/jail/alice.conf")
        XCTAssertEqual(paths.root("alice"), "/var/lib/jail/alice/root")
        var c = JailConfiguration(uid: 63000)
        c.root = paths.root("alice") + "/"
        XCTAssertNil(c.overlay)
        c.base = "/var/lib/jail/bases/debian"
        XCTAssertEqual(c.overlay, OverlayLayers(lower: "/var/lib/jail/bases/debian", upper: "/var/lib/jail/alice/upper",
                                                work: "/var/lib/jail/alice/work", target: "/var/lib/jail/alice/root"))
        c.base = "/srv/a,b"
        XCTAssertEqual(c.overlay?.unsafeCharacter, ",")
    }

    func testBaseTable() {
        let table = Provision.baseTable([.init(name: "debian", path: "/var/lib/jail/bases/debian", jails: ["alice", "bob"]),
                                         .init(name: "-", path: "/srv/busybox", jails: [])])
        XCTAssertEqual(table, """
            BASE    PATH                        JAILS
            debian  /var/lib/jail/bases/debian  alice,bob
            -       /srv/busybox                -

            """)
    }

    func testMountinfoEscapes() {
        XCTAssertEqual(MountInfoEntry.unescape("/srv/a\\040b"), "/srv/a b")
    }

    func testConfigsWithAUidAreThoseThatGiveIt() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jail-configs-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "uid = 63000\nroot = /srv/a\n".write(toFile: directory + "/alice.conf", atomically: true, encoding: .utf8)
        try "uid = 63001\nhostname = x63000y\n".write(toFile: directory + "/bob.conf", atomically: true, encoding: .utf8)
        try "uid = 63002\n".write(toFile: directory + "/carol.conf", atomically: true, encoding: .utf8)
        let paths = ProvisionPaths(configDirectory: directory, stateDirectory: "/nonexistent")
        // bob's text holds the digits too: it is parsed, and its uid is not 63000.
        XCTAssertEqual(try paths.configs(withUID: 63000), ["alice"])
        XCTAssertEqual(try paths.configs(withUID: 63004), [])
        // One that cannot be read is an error, not a config without the uid.
        try FileManager.default.createDirectory(atPath: directory + "/dave.conf", withIntermediateDirectories: true)
        XCTAssertThrowsError(try paths.configs(withUID: 63000))
        try FileManager.default.removeItem(atPath: directory + "/dave.conf")
        XCTAssertEqual(try ProvisionPaths(configDirectory: directory + "/none", stateDirectory: "/nonexistent").configs(withUID: 1), [])
        XCTAssertEqual(paths.configs().map(\.name), ["alice", "bob", "carol"])
        XCTAssertTrue(Array("abc63000".utf8).contains(sequence: Array("63000".utf8)))
        XCTAssertFalse(Array("6300".utf8).contains(sequence: Array("63000".utf8)))
        XCTAssertFalse(Array("".utf8).contains(sequence: Array("1".utf8)))
    }
}
