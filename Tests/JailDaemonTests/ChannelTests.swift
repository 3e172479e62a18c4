@testable import JailDaemon
import JailSystem
import Logging
import SystemPackage
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The words between processes (Sources/JailDaemon/Channels): each end's encoding read back by
/// the other, and the state file's write reporting its failures.
final class ChannelTests: XCTestCase {
    func testReadinessRoundTrips() {
        XCTAssertEqual(Readiness.decode(Readiness.ready("0").encoded), .ready("0"))
        XCTAssertEqual(Readiness.decode(Readiness.failed("mkdir(/x): Permission denied").encoded), .failed("mkdir(/x): Permission denied"))
        XCTAssertNil(Readiness.decode([]))
    }

    func testLifelineWordsAreTheBytesInitWaitsFor() throws {
        XCTAssertEqual(LifelineWord.go.rawValue, UInt8(ascii: "G"))
        XCTAssertEqual(LifelineWord.cgroupsJoined.rawValue, UInt8(ascii: "C"))
        let pipe = try Pipe.make()
        try LifelineWord.go.send(on: pipe.write)
        try LifelineWord.go.send(on: pipe.write)
        XCTAssertTrue(LifelineWord.go.await(on: pipe.read))
        XCTAssertFalse(LifelineWord.cgroupsJoined.await(on: pipe.read), "a word out of order ends the start")
        pipe.write.closeQuietly()
        XCTAssertFalse(LifelineWord.go.await(on: pipe.read), "EOF: the supervisor is gone")
        pipe.read.closeQuietly()
    }

    /// The supervisor's side: a word init can no longer read is an error it sees (EPIPE), on
    /// which it reads init's reason instead of going on (Supervisor.tell), never a silent drop.
    func testLifelineWordToAnInitThatIsGoneIsAnError() throws {
        signal(SIGPIPE, SIG_IGN)
        let pipe = try Pipe.make()
        pipe.read.closeQuietly()
        XCTAssertThrowsError(try LifelineWord.go.send(on: pipe.write)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, .brokenPipe)
        }
        pipe.write.closeQuietly()
    }

    func testPipeLogLevelsRoundTrip() {
        for level in [Logger.Level.error, .warning, .info] {
            let line = String(PipeLogLevel(level).rawValue) + "text"
            XCTAssertEqual(PipeLogLevel.parse(line[...]).0, level)
            XCTAssertEqual(PipeLogLevel.parse(line[...]).1, "text")
        }
        XCTAssertEqual(PipeLogLevel.parse("no letter"[...]).0, .info)
        XCTAssertEqual(PipeLogLevel.parse("no letter"[...]).1, "no letter")
        XCTAssertEqual(PipeLogLevel(.critical), .error)
        XCTAssertEqual(PipeLogLevel(.debug), .info)
    }

    func testASessionRecordDecodesIntoItsType() {
        let text = Logfmt.line("session", [("jail", "mail"), ("id", "7"), ("uid", "61000"), ("user", "work"), ("peer_uid", "?"),
                                           ("peer_pid", "?"), ("from", "192.0.2.7"), ("tty", "/dev/pts/0"),
                                           ("command", "ls -l"), ("started", "1700000000"), ("program_pid", "12"),
                                           ("connection_fd", "4")])
        XCTAssertEqual(PublishedSession.decode(text),
                       PublishedSession(jail: "mail", id: 7, uid: 61000, user: "work", peerUid: nil, from: "192.0.2.7",
                                        tty: "/dev/pts/0", command: "ls -l", started: 1_700_000_000, connectionFD: 4))
        XCTAssertNil(PublishedSession.decode("session jail=mail"), "no id: no record")
    }

    func testAnAtomicWriteReplacesTheFileOrReportsWhyNot() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("channel-\(getpid())-\(UUID())").path
        try ensureDirectory(directory, mode: 0o700)
        try ensureDirectory(directory, mode: 0o700)  // already there: fine
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/x.state"
        try writeFileAtomically(path, Array("one\n".utf8), mode: 0o644)
        try writeFileAtomically(path, Array("two\n".utf8), mode: 0o644)
        XCTAssertEqual(try readText(path), "two\n")
        // The temporary name taken by a directory: the failure names the call and the path,
        // the old file stays whole.
        XCTAssertEqual(mkdir(path + ".new", 0o700), 0)
        XCTAssertThrowsError(try writeFileAtomically(path, Array("three\n".utf8), mode: 0o644)) { error in
            XCTAssertEqual(error as? SystemError, SystemError("open", path: path + ".new", errno: .isDirectory))
        }
        XCTAssertEqual(try readText(path), "two\n")
        // A file where a directory should be.
        XCTAssertThrowsError(try ensureDirectory(path, mode: 0o700)) { error in
            XCTAssertEqual(error as? SystemError, SystemError("mkdir", path: path, errno: .fileExists))
        }
    }

    func testTypedErrorsReadAsTheOldStrings() {
        let failure = SystemError("open", path: "/sys/fs/cgroup/jail/web", errno: .permissionDenied)
        XCTAssertEqual(JailError.failed("--ports: cannot open cgroup /sys/fs/cgroup/jail/web", failure).description,
                       "--ports: cannot open cgroup /sys/fs/cgroup/jail/web: Permission denied")
        XCTAssertEqual(JailError.state(SystemError("open", path: "/run/jail/state/a.state.new", errno: .readOnlyFileSystem)).description,
                       "cannot save the jail's state: open(/run/jail/state/a.state.new): Read-only file system")
        XCTAssertEqual(ProvisionError.system(SystemError("mkdir", path: "/run/jail", errno: .permissionDenied)).description,
                       "mkdir(/run/jail): Permission denied")
        XCTAssertEqual(ProvisionError.cause("base /b", ProvisionError.refused("uid 5 is taken")).description, "base /b: uid 5 is taken")
        XCTAssertEqual(ProvisionError.from(failure).description, "open(/sys/fs/cgroup/jail/web): Permission denied")
    }
}
