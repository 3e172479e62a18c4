import CJail
import Foundation
import JailSystem
import XCTest

@testable import JailDaemon

/// The private-root rule (issue 27, item 2) and the reader of a jail's files (item 7).
final class PreflightTests: XCTestCase {
    func directory(_ path: String, _ mode: mode_t, uid: UInt32 = 0, gid: UInt32 = 0, acl: [String] = []) -> DirectoryReach {
        DirectoryReach(path: path, uid: uid, gid: gid, mode: S_IFDIR | mode, aclSearchers: acl)
    }

    func testAWorldReachableRootIsNamedWithItsMode() {
        let chain = [directory("/", 0o755), directory("/srv", 0o755), directory("/srv/r", 0o755)]
        XCTAssertEqual(Preflight.reachReason(what: "root", path: "/srv/r", chain: chain),
                       "root /srv/r (mode 755) is reachable by every host user, and files root inside creates there are "
                           + "root's on the host: close a directory above it to group and others (chmod 700 /srv)")
    }

    func testAGroupReachableParentIsRefusedWithTheFix() {
        let chain = [directory("/", 0o755), directory("/srv", 0o750, gid: 1001), directory("/srv/r", 0o755)]
        XCTAssertEqual(Preflight.reachReason(what: "root", path: "/srv/r", chain: chain),
                       "root /srv/r is reachable by group 1001 through /srv (mode 750), and files root inside creates there "
                           + "are root's on the host: only root may pass a directory above it (chmod g-rwx /srv)")
    }

    func testOnlyADirectoryClosedToGroupOthersAndACLMakesItPrivate() {
        let root = directory("/srv/r", 0o755)
        XCTAssertNil(Preflight.reachReason(what: "root", path: "/srv/r", chain: [directory("/", 0o755), directory("/srv", 0o700), root]))
        XCTAssertNil(Preflight.reachReason(what: "root", path: "/srv/r", chain: [directory("/", 0o755), directory("/srv", 0o740, gid: 5), root]))
        // The root itself may be the closed one.
        XCTAssertNil(Preflight.reachReason(what: "root", path: "/srv/r", chain: [directory("/", 0o755), directory("/srv/r", 0o700)]))
        // Owned by a user: that user passes it (and could chmod it).
        let owned = Preflight.reachReason(what: "root", path: "/srv/r", chain: [directory("/", 0o755), directory("/srv", 0o700, uid: 1000), root])
        XCTAssertEqual(owned?.contains("reachable by its owner uid 1000 through /srv (mode 700)"), true, owned ?? "")
        XCTAssertEqual(owned?.contains("(chown root /srv)"), true, owned ?? "")
        // A named user in the ACL reopens a 0700 directory.
        let acl = Preflight.reachReason(what: "host path of mount /data", path: "/d",
                                        chain: [directory("/", 0o755), directory("/d", 0o700, acl: ["user 1001"])],
                                        consequence: "root inside can plant setuid files there")
        XCTAssertEqual(acl, "host path of mount /data /d is reachable by user 1001 (ACL) through /d (mode 700), and root "
                           + "inside can plant setuid files there: only root may pass a directory above it "
                           + "(setfacl -b /d && chmod g-rwx /d)")
    }

    /// The kernel's xattr form: version 2, then {tag u16, perm u16, id u32}, little-endian.
    func acl(_ entries: [(UInt16, UInt16, UInt32)]) -> [UInt8] {
        var bytes: [UInt8] = [2, 0, 0, 0]
        for (tag, perm, id) in entries {
            bytes += [UInt8(tag & 0xff), UInt8(tag >> 8), UInt8(perm & 0xff), UInt8(perm >> 8)]
            bytes += [UInt8(id & 0xff), UInt8((id >> 8) & 0xff), UInt8((id >> 16) & 0xff), UInt8(id >> 24)]
        }
        return bytes
    }

    func testACLSearchersHonourTheMask() {
        let minimal = acl([(0x01, 7, UInt32.max), (0x04, 0, UInt32.max), (0x20, 0, UInt32.max)])
        XCTAssertEqual(aclSearchers(minimal), [])
        let named = acl([(0x01, 7, UInt32.max), (0x02, 5, 1001), (0x04, 0, UInt32.max), (0x08, 1, 2002),
                         (0x10, 5, UInt32.max), (0x20, 0, UInt32.max)])
        XCTAssertEqual(aclSearchers(named), ["user 1001", "group 2002"])
        // A mask without x takes search from every named entry and the owning group.
        let masked = acl([(0x01, 7, UInt32.max), (0x02, 5, 1001), (0x04, 5, UInt32.max), (0x10, 4, UInt32.max),
                          (0x20, 0, UInt32.max)])
        XCTAssertEqual(aclSearchers(masked), [])
        XCTAssertEqual(aclSearchers(acl([(0x01, 7, UInt32.max), (0x20, 1, UInt32.max)])), ["others"])
        XCTAssertEqual(aclSearchers([1, 0, 0, 0]), ["everyone (an unreadable ACL)"])
        XCTAssertEqual(aclSearchers([2, 0, 0, 0, 1]), ["everyone (an unreadable ACL)"])
    }

    func testDirectoryReachReadsModesFromRootDown() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("reach-\(getpid())").path
        try FileManager.default.createDirectory(atPath: base + "/a/b", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        chmod(base + "/a", 0o710)
        let chain = try directoryReach(along: base + "/a/b")
        XCTAssertEqual(chain.first?.path, "/")
        XCTAssertEqual(chain.last?.path, base + "/a/b")
        XCTAssertEqual(chain[chain.count - 2].mode & 0o777, 0o710)
    }

    // readUntrustedFile: a tree with every kind of file where /etc/passwd would be.
    var tree = ""
    var rootFD: Int32 = -1

    override func setUpWithError() throws {
        tree = FileManager.default.temporaryDirectory.appendingPathComponent("untrusted-\(getpid())").path
        try FileManager.default.createDirectory(atPath: tree + "/etc/dir", withIntermediateDirectories: true)
        try "root:x:0:0::/:/bin/sh\n".write(toFile: tree + "/etc/passwd", atomically: false, encoding: .utf8)
        XCTAssertEqual(mkfifo(tree + "/etc/fifo", 0o644), 0)
        XCTAssertEqual(symlink("/etc/passwd", tree + "/etc/link"), 0)
        rootFD = open(tree, CJ_O_PATH | O_DIRECTORY | O_CLOEXEC)
    }

    override func tearDownWithError() throws {
        close(rootFD)
        try? FileManager.default.removeItem(atPath: tree)
    }

    func testAJailFileIsReadOnlyWhenRegularAndSmall() throws {
        XCTAssertEqual(try readUntrustedFile("/etc/passwd", inRoot: rootFD, name: "R/etc/passwd"), Array("root:x:0:0::/:/bin/sh\n".utf8))
        // Resolved in the root: ../../ cannot leave it.
        XCTAssertEqual(try readUntrustedFile("/../../etc/passwd", inRoot: rootFD, name: "p").count, 22)
        let began = monotonicMilliseconds()
        XCTAssertThrowsError(try readUntrustedFile("/etc/fifo", inRoot: rootFD, name: "R/etc/fifo")) { error in
            XCTAssertEqual("\(error)", "R/etc/fifo is a FIFO, not a regular file")
        }
        XCTAssertLessThan(monotonicMilliseconds() - began, 500)
        XCTAssertThrowsError(try readUntrustedFile("/etc/link", inRoot: rootFD, name: "R/etc/link")) { error in
            XCTAssertEqual("\(error)", "R/etc/link is a symlink, not a regular file")
        }
        XCTAssertThrowsError(try readUntrustedFile("/etc/dir", inRoot: rootFD, name: "d")) { error in
            XCTAssertEqual((error as? UntrustedFileError)?.systemError.errno, .isDirectory)
        }
        XCTAssertThrowsError(try readUntrustedFile("/etc/passwd", inRoot: rootFD, name: "p", limit: 10)) { error in
            XCTAssertEqual("\(error)", "p is larger than 10 bytes")
        }
        XCTAssertThrowsError(try readUntrustedFile("/etc/none", inRoot: rootFD, name: "n")) { error in
            XCTAssertEqual((error as? UntrustedFileError)?.isMissing, true)
        }
    }
}
