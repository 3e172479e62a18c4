@testable import JailDaemon
import Foundation
import XCTest

/// The one reader of the `key = value` format: jail configs (`jaild config` prints what it
/// reads, the Ansible module reads through it) and the record of `jaild destroy --keep-data`.
final class ConfigFileTests: XCTestCase {
    func testCRLFLinesReadAsLFLines() throws {
        let lf = "# a jail\nuid = 61000\n\nboot = echo a#b\nboot = printf '%s' \"x = y\"\n; last\nhostname = h\n"
        let crlf = lf.replacingOccurrences(of: "\n", with: "\r\n")
        let expected = [ConfigFile.Entry(line: 2, key: "uid", value: "61000"),
                        ConfigFile.Entry(line: 4, key: "boot", value: "echo a#b"),
                        ConfigFile.Entry(line: 5, key: "boot", value: "printf '%s' \"x = y\""),
                        ConfigFile.Entry(line: 7, key: "hostname", value: "h")]
        XCTAssertEqual(try ConfigFile.parse(lf, path: "f"), expected)
        XCTAssertEqual(try ConfigFile.parse(crlf, path: "f"), expected, "a CRLF file is the same file")
        XCTAssertThrowsError(try ConfigFile.parse("uid = 1\r\nroot\r\n", path: "f")) {
            XCTAssertEqual("\($0)", "f:2: expected 'key = value', got 'root'", "lines are counted at CRLF")
        }
    }

    func testQuotesAndTheFirstEqualsSignBelongToTheValue() throws {
        let entries = try ConfigFile.parse("hostname = \"quoted\"\nmount=/a=/b:ro\n  rlimit\t=\tnofile=64  \n", path: "f")
        XCTAssertEqual(entries.map(\.key), ["hostname", "mount", "rlimit"])
        XCTAssertEqual(entries.map(\.value), ["\"quoted\"", "/a=/b:ro", "nofile=64"])
    }

    func testEntriesTakeAnyKeyButNeedAKeyAndAValue() throws {
        XCTAssertEqual(try ConfigFile.entries("user = work\ncopy = no\n", path: "k").map(\.key), ["user", "copy"])
        XCTAssertThrowsError(try ConfigFile.parse("user = work\n", path: "f")) {
            XCTAssertTrue("\($0)".hasPrefix("f:1: unknown key 'user'"))
        }
        XCTAssertThrowsError(try ConfigFile.entries("\n= 3\n", path: "f")) { XCTAssertEqual("\($0)", "f:2: '= 3' has no key") }
        XCTAssertThrowsError(try ConfigFile.entries("uid =\n", path: "f")) { XCTAssertEqual("\($0)", "f:1: 'uid' has no value") }
    }

    func testKeptDataReadsWhatItWrites() {
        let kept = KeptData(uid: 63920, gid: 63921, user: "work", base: "/var/lib/jail/bases/busybox", copy: false,
                            backend: .image, socketPrefix: "/run/jail/x")
        XCTAssertEqual(KeptData.parse(kept.text), kept)
        var plain = kept
        plain.socketPrefix = nil
        plain.copy = true
        XCTAssertEqual(KeptData.parse(plain.text), plain)
        XCTAssertEqual(KeptData.parse(plain.text.replacingOccurrences(of: "\n", with: "\r\n")), plain)
        XCTAssertNil(KeptData.parse("uid = 1\nnot a line\n"))
        XCTAssertNil(KeptData.parse("uid = 1\n"), "a record without the rest is none")
    }
}
