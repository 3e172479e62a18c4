import CJail
@testable import JailDaemon
import JailSystem
import SystemPackage
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The JailSystem calls that init, the sessions, the relays and the supervisor use instead of
/// cj_ calls (issue 28): each does what its C call did, and a failure names the call and path.
final class ProcessFaceTests: ScratchDirectoryTestCase {
    override class var template: String { "/tmp/jail-process-face-XXXXXX" }

    func testOpeningWithoutSymlinksRefusesALinkOnTheWay() throws {
        try makeDirectory(directory + "/real", mode: 0o755)
        try makeSymlink("real", at: directory + "/link")
        let tree = try openDirectoryPath(directory)
        defer { tree.closeQuietly() }
        try openBeneathWithoutSymlinks("real", in: tree, CJ_O_PATH | O_DIRECTORY, name: "tree/real").closeQuietly()
        XCTAssertThrowsError(try openBeneathWithoutSymlinks("link", in: tree, CJ_O_PATH | O_DIRECTORY, name: "tree/link")) { error in
            let failure = error as? SystemError
            XCTAssertEqual(failure?.errno, .tooManySymbolicLinkLevels)
            XCTAssertEqual(failure?.description, "openat2(tree/link): Too many levels of symbolic links")
        }
    }

    func testServiceDirectoriesAreMadeAndALinkIsRefused() throws {
        let tree = try openDirectoryPath(directory)
        defer { tree.closeQuietly() }
        try ServiceEndpoint.openOrMakeDirectory("made", in: tree).closeQuietly()
        XCTAssertEqual(try fileStatus(directory + "/made").map(isDirectory), true)
        try ServiceEndpoint.openOrMakeDirectory("made", in: tree).closeQuietly()  // there already
        try makeSymlink("/tmp", at: directory + "/link")
        XCTAssertThrowsError(try ServiceEndpoint.openOrMakeDirectory("link", in: tree)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, .tooManySymbolicLinkLevels)
        }
    }

    func testAPseudoTerminalTakesItsWindowSize() throws {
        let (master, slavePath) = try openPseudoTerminal()
        defer { master.closeQuietly() }
        XCTAssertTrue(slavePath.hasPrefix("/dev/pts/"), slavePath)
        try master.setWindowSize(rows: 33, columns: 101, path: slavePath)
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        XCTAssertEqual(cj_get_window_size(master.rawValue, &rows, &columns), 0)
        XCTAssertEqual([rows, columns], [33, 101])
    }

    func testAForkedChildRunsAndIsReaped() throws {
        let pid = try forkProcess()
        if pid == 0 { _exit(7) }
        XCTAssertEqual(waitForChild(pid).map(exitCode(ofStatus:)), 7)
    }

    func testAnEventCounterIsNotReadableUntilAdded() throws {
        let counter = try makeEventCounter()
        defer { counter.closeQuietly() }
        XCTAssertFalse(try counter.isReadable())
        var one: UInt64 = 1
        XCTAssertEqual(write(counter.rawValue, &one, 8), 8)
        XCTAssertTrue(try counter.isReadable())
    }

    func testAFailedNamespaceEntryNamesTheNamespace() {
        XCTAssertThrowsError(try enterNamespace(-1, type: Int32(CLONE_NEWNS), name: "mnt")) { error in
            XCTAssertEqual((error as? SystemError)?.description, "setns(mnt): Bad file descriptor")
        }
    }

    func testSystemdNotifyReachesTheSocketOrSaysWhereNot() throws {
        let path = directory + "/notify"
        let socket = try UnixSocket.bindDatagram(path: path)
        defer { socket.closeQuietly() }
        try notifySystemd("READY=1", socketPath: path)
        XCTAssertEqual(try socket.readChunk(max: 64).map { String(decoding: $0, as: UTF8.self) }, "READY=1")
        XCTAssertThrowsError(try notifySystemd("READY=1", socketPath: directory + "/nobody")) { error in
            XCTAssertEqual((error as? SystemError)?.path, directory + "/nobody")
        }
    }
}
