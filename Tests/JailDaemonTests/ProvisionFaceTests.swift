import CJail
@testable import JailDaemon
import JailSystem
import SystemPackage
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The JailSystem calls the provisioning, disk, control and channel rooms use (issue 28):
/// each does what its C call does, a missing file is an answer where the name says so, and
/// any other failure names the call and the path.
final class ProvisionFaceTests: ScratchDirectoryTestCase {
    override class var template: String { "/tmp/jail-provision-face-XXXXXX" }

    func testPathsInsideARootStayInsideIt() throws {
        try makeDirectory(directory + "/etc", mode: 0o755)
        try writeFile(directory + "/etc/passwd", text: "root:x:0:0::/root:/bin/sh\n", mode: 0o644)
        // A symlink to the host's /etc resolves inside the tree: to the tree's own /etc.
        try makeSymlink("/etc", at: directory + "/link")
        let root = try openDirectoryPath(directory)
        defer { closeDescriptor(root.rawValue) }
        let passwd = try openInRoot("/link/passwd", root: root, O_RDONLY, name: "tree/link/passwd")
        defer { closeDescriptor(passwd.rawValue) }
        XCTAssertEqual(String(decoding: try readAll(passwd), as: UTF8.self), "root:x:0:0::/root:/bin/sh\n")
        XCTAssertNil(try statusInRoot("/missing", root: root, name: "tree/missing"))
        let link = try XCTUnwrap(try statusInRoot("/link", root: root, name: "tree/link"))
        XCTAssertTrue(isSymlink(link), "the last component is not followed")
        XCTAssertThrowsError(try openInRoot("/missing", root: root, O_RDONLY, name: "tree/missing")) { error in
            XCTAssertEqual("\(error)", "open(tree/missing): No such file or directory")
        }
    }

    func testDirectoryEntriesHaveTheirTypesAndLeaveTheCallersDescriptorOpen() throws {
        try makeDirectory(directory + "/sub", mode: 0o700)
        try writeFile(directory + "/file", text: "x", mode: 0o600)
        let anchor = try openFile(directory, O_RDONLY | O_DIRECTORY)
        defer { closeDescriptor(anchor.rawValue) }
        let entries = try directoryEntries(of: anchor, path: directory).sorted { $0.name < $1.name }
        XCTAssertEqual(entries.map(\.name), ["file", "sub"])
        XCTAssertEqual(entries.map(\.isRegularFile), [true, false])
        XCTAssertEqual(entries.map(\.isDirectory), [false, true])
        XCTAssertEqual(try directoryEntries(of: anchor, path: directory, limit: 1).count, 1)
        XCTAssertNoThrow(try anchor.fileStatus(), "the listing read through a descriptor of its own")
    }

    func testRecordsAtAnOffsetAndTheirLock() throws {
        let path = directory + "/records"
        let file = try openFile(path, O_RDWR | O_CREAT | O_EXCL, mode: 0o600)
        defer { closeDescriptor(file.rawValue) }
        try file.writeBytes([1, 2, 3], at: 4, path: path)
        XCTAssertEqual(try file.endOffset(path: path), 7)
        XCTAssertEqual(try file.readBytes(count: 8, at: 0, path: path), [0, 0, 0, 0, 1, 2, 3], "short only at the end")
        XCTAssertEqual(try file.readBytes(count: 4, at: 100, path: path), [])
        XCTAssertTrue(try file.recordLock())
        let readOnly = try openFile(path, O_RDONLY)
        defer { closeDescriptor(readOnly.rawValue) }
        XCTAssertThrowsError(try readOnly.recordLock()) { error in
            XCTAssertEqual("\(error)", "fcntl(F_SETLK): Bad file descriptor", "a write lock needs a writable descriptor")
        }
    }

    func testADurableWriteReplacesWholeKeepsTheModeAndLeavesNoTemporary() throws {
        let path = directory + "/shells"
        try writeFile(path, text: "/bin/sh\n", mode: 0o644)
        try writeFileDurably(path, Array("/bin/sh\n/usr/bin/jail\n".utf8), mode: 0o640, temporary: path + ".jaild-new")
        XCTAssertEqual(try readText(path), "/bin/sh\n/usr/bin/jail\n")
        XCTAssertEqual(try XCTUnwrap(try fileStatus(path)).st_mode & 0o7777, 0o640)
        XCTAssertNil(try fileStatus(path + ".jaild-new"))
        XCTAssertThrowsError(try writeFileDurably(directory + "/none/shells", [], mode: 0o644, temporary: directory + "/none/t")) { error in
            XCTAssertEqual("\(error)", "open(\(directory)/none/t): No such file or directory")
        }
    }

    func testReadsThatAnswerMissingAndThrowTheRest() throws {
        XCTAssertNil(try readTextIfPresent(directory + "/missing"))
        XCTAssertNil(try readFileIfPresent(directory + "/missing"))
        XCTAssertNil(try fileStatusFollowingLinks(directory + "/missing"))
        // A directory read as a file is a failure, not "missing": the /etc/passwd read as empty of before.
        XCTAssertThrowsError(try readTextIfPresent(directory)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, .isDirectory)
        }
        try makeSymlink(directory, at: directory + "/link")
        XCTAssertTrue(isDirectory(try XCTUnwrap(try fileStatusFollowingLinks(directory + "/link"))))
        XCTAssertThrowsError(try checkAccess(directory + "/missing", F_OK)) { error in
            XCTAssertEqual("\(error)", "access(\(directory)/missing): No such file or directory")
        }
        XCTAssertTrue(isAccessible(directory, F_OK))
    }

    func testTimesAddressesAndFileSystems() throws {
        let time = try XCTUnwrap(UTCTime(secondsSinceEpoch: 1_796_584_503))
        XCTAssertEqual([time.year, time.month, time.day, time.hour, time.minute, time.second], [2026, 12, 6, 19, 15, 3])
        XCTAssertEqual(ShownJail.iso8601(1_796_584_503), "2026-12-06T19:15:03Z")
        XCTAssertEqual(Sessions.clock(1_796_584_503), "19:15:03")
        XCTAssertEqual(ipAddressBytes("192.0.2.10"), [192, 0, 2, 10])
        XCTAssertEqual(ipAddressBytes("2001:db8::10").map(ipAddressText), "2001:db8::10")
        XCTAssertNil(ipAddressBytes("192.0.2"))
        XCTAssertGreaterThan(try FileSystemUsage(path: directory).blocks, 0)
        XCTAssertThrowsError(try FileSystemUsage(path: directory + "/missing")) { error in
            XCTAssertEqual("\(error)", "statfs(\(directory)/missing): No such file or directory")
        }
    }
}
