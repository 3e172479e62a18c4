@testable import JailDaemon
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class LogFileTests: XCTestCase {
    func testRotatesBySizeAndKeepsThreeOldFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jail-logfile-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = LogFile(name: "t", directory: directory, maxBytes: 200)
        try file.open()
        XCTAssertTrue(file.created)
        for index in 0..<40 { file.append(level: "", "line \(index) " + String(repeating: "x", count: 40)) }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        XCTAssertEqual(names, ["t.log", "t.log.1", "t.log.2", "t.log.3"])
        for name in names {
            let size = try FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int ?? 0
            XCTAssertLessThanOrEqual(size, 200, name)
        }
        let newest = try String(contentsOfFile: directory + "/t.log", encoding: .utf8)
        XCTAssertTrue(newest.contains("line 39 "), newest)
        XCTAssertTrue(newest.hasSuffix("\n"))
        let reopened = LogFile(name: "t", directory: directory, maxBytes: 200)
        try reopened.open()
        XCTAssertFalse(reopened.created)
    }

    /// A rotation that fails is said in the log itself (the one place a daemon without syslog
    /// writes to), and the lines go on in the same file.
    func testAFailedRotationIsWrittenToTheLog() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jail-logfile-rot-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = LogFile(name: "t", directory: directory, maxBytes: 200)
        try file.open()
        // The oldest file's name is taken by a directory that is not empty: it cannot be removed.
        try FileManager.default.createDirectory(atPath: directory + "/t.log.3/x", withIntermediateDirectories: true)
        for index in 0..<10 { file.append(level: "", "line \(index) " + String(repeating: "x", count: 40)) }
        let text = try String(contentsOfFile: directory + "/t.log", encoding: .utf8)
        XCTAssertTrue(text.contains("warning: cannot rotate \(directory)/t.log: unlink(\(directory)/t.log.3)"), text)
        XCTAssertTrue(text.contains("line 9 "), text)
    }

    func testNoListenerMeansNoSyslog() {
        XCTAssertFalse(LogFile.syslogIsReachable("/nonexistent/jail-test/log"))
    }
}
