import CJail
@testable import JailDaemon
import JailSystem
import SystemPackage
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The JailSystem calls the payload and session rooms use (issue 28), and the session's
/// private directory built on them: each does what its C call does, and a failure names the
/// call and the path.
final class SystemFaceAdditionsTests: XCTestCase {
    func testATemporaryDirectoryIsNewAndPrivateAndABadTemplateIsNamed() throws {
        let first = try makeTemporaryDirectory("/tmp/jail-face-XXXXXX")
        let second = try makeTemporaryDirectory("/tmp/jail-face-XXXXXX")
        defer { for path in [first, second] { discardDirectory(path) } }
        XCTAssertNotEqual(first, second)
        XCTAssertTrue(first.hasPrefix("/tmp/jail-face-") && !first.hasSuffix("XXXXXX"))
        let info = try XCTUnwrap(try fileStatus(first))
        XCTAssertTrue(isDirectory(info))
        XCTAssertEqual(info.st_mode & 0o7777, 0o700)
        XCTAssertThrowsError(try makeTemporaryDirectory("/tmp/jail-face-no-template")) { error in
            XCTAssertEqual("\(error)", "mkdtemp(/tmp/jail-face-no-template): Invalid argument")
        }
    }

    func testModeAndOwnerOfAnOpenFileAndOfAnEntryAreExact() throws {
        let directory = try makeTemporaryDirectory("/tmp/jail-face-XXXXXX")
        let anchor = try openFile(directory, O_RDONLY | O_DIRECTORY)
        defer {
            discardFile("f", in: anchor)
            anchor.closeQuietly()
            discardDirectory(directory)
        }
        let file = try openFile("f", O_WRONLY | O_CREAT | O_EXCL, mode: 0o600, in: anchor)
        defer { file.closeQuietly() }
        // Exactly, whatever the umask: 0o666 survives it.
        try file.setMode(0o666, path: directory + "/f")
        XCTAssertEqual(try file.fileStatus().st_mode & 0o7777, 0o666)
        try setMode("f", 0o640, in: anchor)
        XCTAssertEqual(try file.fileStatus().st_mode & 0o7777, 0o640)
        try file.setOwner(uid: getuid(), gid: getgid())
        XCTAssertEqual(try file.fileStatus().st_uid, getuid())
        XCTAssertThrowsError(try setMode("missing", 0o600, in: anchor, path: directory + "/missing")) { error in
            XCTAssertEqual("\(error)", "chmod(\(directory)/missing): No such file or directory")
        }
    }

    func testAKernelValueGoesInOneWriteAndARefusalIsNamed() throws {
        let directory = try makeTemporaryDirectory("/tmp/jail-face-XXXXXX")
        let path = directory + "/procs"
        defer {
            discardFile(path)
            discardDirectory(directory)
        }
        try writeFile(path, text: "", mode: 0o644)
        let writable = try openFile(path, O_WRONLY)
        try writeKernelFile(writable, "0", path: "cgroup.procs")
        try closeAfterWriting(writable, path: path)
        XCTAssertEqual(try readText(path), "0")
        let readOnly = try openFile(path, O_RDONLY)
        defer { readOnly.closeQuietly() }
        XCTAssertThrowsError(try writeKernelFile(readOnly, "0", path: "cgroup.procs")) { error in
            XCTAssertEqual((error as? SystemError)?.operation, "write")
            XCTAssertEqual((error as? SystemError)?.path, "cgroup.procs")
        }
    }

    func testTerminalModesAndSpeedsRoundTripOnAPty() throws {
        var name = [CChar](repeating: 0, count: 128)
        let master = cj_open_pty_master(&name, name.count)
        guard master >= 0 else { throw SystemError.last("open", path: "/dev/ptmx") }  // every machine the tests run on has ptys
        defer { closeDescriptor(master) }
        let slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let slave = try openFile(slavePath, O_RDWR | O_NOCTTY)
        defer { slave.closeQuietly() }
        var attributes = try slave.terminalAttributes(path: slavePath)
        attributes.c_lflag &= ~tcflag_t(ECHO)
        // One speed for both: glibc keeps a single one in c_cflag for a pty's old-style termios.
        attributes.setSpeeds(input: speed_t(B9600), output: speed_t(B9600))
        try slave.setTerminalAttributes(attributes, path: slavePath)
        var read = try slave.terminalAttributes(path: slavePath)
        XCTAssertEqual(read.c_lflag & tcflag_t(ECHO), 0)
        XCTAssertEqual(cfgetispeed(&read), speed_t(B9600))
        XCTAssertEqual(cfgetospeed(&read), speed_t(B9600))
        let notATerminal = try openFile("/dev/null", O_RDONLY)
        defer { notATerminal.closeQuietly() }
        XCTAssertThrowsError(try notATerminal.terminalAttributes(path: "/dev/null")) { error in
            XCTAssertEqual("\(error)", "tcgetattr(/dev/null): Inappropriate ioctl for device")
        }
    }

    func testTheHostNameIsTheNamespaces() throws {
        let fromProc = try readText("/proc/sys/kernel/hostname").trimmingWhitespace()
        XCTAssertEqual(try hostName(), String(fromProc))
    }

    /// A session's directory in /tmp: made private, filled through its descriptor, handed
    /// over, and removed at the end with everything made in it (a user's own file keeps it).
    func testAPrivateDirectoryIsMadeFilledAndRemoved() throws {
        let me = Account(name: "me", uid: getuid(), gid: getgid(), groups: [], home: "/", shell: "/bin/sh")
        var directory = try PrivateDirectory(kind: "facetest")
        try directory.createFile("cookie", contents: Array("secret".utf8), owner: me)
        let socket = try directory.listen("agent", owner: me)
        defer { socket.closeQuietly() }
        try directory.handOver(to: me)
        XCTAssertEqual(try readText(directory.path + "/cookie"), "secret")
        XCTAssertEqual(try XCTUnwrap(try fileStatus(directory.path + "/cookie")).st_mode & 0o7777, 0o600)
        XCTAssertEqual(try XCTUnwrap(try fileStatus(directory.path + "/agent")).st_mode & 0o7777, 0o600)
        XCTAssertThrowsError(try directory.createFile("cookie", contents: [], owner: me)) { error in
            XCTAssertEqual("\(error)", "openat(\(directory.path)/cookie): File exists")
        }
        directory.remove()
        XCTAssertFalse(somethingExists(at: directory.path))

        var kept = try PrivateDirectory(kind: "facetest")
        try kept.createFile("cookie", contents: [], owner: me)
        try writeFile(kept.path + "/users-own", text: "", mode: 0o600)
        kept.remove()
        XCTAssertFalse(somethingExists(at: kept.path + "/cookie"))
        XCTAssertTrue(somethingExists(at: kept.path + "/users-own"))
        discardFile(kept.path + "/users-own")
        discardDirectory(kept.path)
    }
}
