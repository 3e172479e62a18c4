import JailDaemon
import XCTest

final class LogfmtTests: XCTestCase {
    func testBareAndQuotedValues() {
        XCTAssertEqual(Logfmt.line("session start", [("jail", "mail"), ("id", "3"), ("command", "ls -l")]),
                       "session start jail=mail id=3 command=\"ls -l\"")
        XCTAssertEqual(Logfmt.line("session", [("from", "local"), ("tty", "/dev/pts/0"), ("empty", "")]),
                       "session from=local tty=/dev/pts/0 empty=\"\"")
        XCTAssertEqual(Logfmt.quote("a=b"), "\"a=b\"")
        XCTAssertEqual(Logfmt.quote("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"")
    }

    func testControlCharactersCannotForgeALine() {
        let hostile = "x\njaild: session start jail=other user=root\r\u{1b}[2J\u{7}\u{0}\u{7f}\u{85}\u{9b}31m\u{2028}\u{202e}\u{feff}"
        let line = Logfmt.line("session", [("command", hostile)])
        for scalar in line.unicodeScalars {
            XCTAssertFalse(scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value), "raw U+\(String(scalar.value, radix: 16))")
            XCTAssertFalse([0x2028, 0x2029, 0x202e, 0xfeff].contains(scalar.value))
        }
        XCTAssertEqual(line, "session command=\"x\\njaild: session start jail=other user=root\\r\\x1b[2J\\x07\\x00\\x7f\\x85\\x9b31m"
                       + "\\u{2028}\\u{202e}\\u{feff}\"")
    }

    func testAQuoteInAValueCannotEndItEarly() {
        // A parser that splits on unescaped quotes must see one value, not a forged field.
        let line = Logfmt.line("s", [("command", "\" user=root x=\""), ("id", "1")])
        XCTAssertEqual(line, "s command=\"\\\" user=root x=\\\"\" id=1")
    }

    func testKeysAreSanitized() {
        XCTAssertEqual(Logfmt.line("s", [("a b=\n", "1")]), "s ab=1")
    }

    func testNonASCIIIsKeptButQuoted() {
        XCTAssertEqual(Logfmt.quote("héllo"), "\"héllo\"")
    }

    func testTruncationAtCharacterBoundary() {
        XCTAssertEqual(Logfmt.truncated("abc", bytes: 256), "abc")
        let long = String(repeating: "é", count: 200)  // 400 bytes
        let cut = Logfmt.truncated(long, bytes: 256)
        XCTAssertEqual(cut, String(repeating: "é", count: 128) + "…")
        XCTAssertEqual(Logfmt.truncated(String(repeating: "a", count: 300), bytes: 256).utf8.count, 256 + "…".utf8.count)
    }

    func testEveryByteIsSafe() {
        var all = ""
        for v in 0..<0x3000 { if let s = Unicode.Scalar(v) { all.unicodeScalars.append(s) } }
        let line = Logfmt.line("s", [("v", all)])
        XCTAssertFalse(line.unicodeScalars.contains { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) })
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 0)
    }

    func testPrintableEscapesOnlyTheUnsafe() {
        XCTAssertEqual(Logfmt.printable("plain \"text\" \\ é"), "plain \"text\" \\ é")
        XCTAssertEqual(Logfmt.printable("a\u{1b}[2J\u{9b}31m\u{202e}b\nc"), "a\\x1b[2J\\x9b31m\\u{202e}b\\x0ac")
    }

    func testJSONEscapesTheSameCharacters() {
        XCTAssertEqual(Logfmt.json("sleep \u{9b}31m\u{202e}gpj.exe \u{1b}[2J\"\\\n"),
                       "\"sleep \\u009b31m\\u202egpj.exe \\u001b[2J\\\"\\\\\\n\"")
        var all = ""
        for v in 0..<0x3000 { if let s = Unicode.Scalar(v) { all.unicodeScalars.append(s) } }
        XCTAssertFalse(Logfmt.json(all).unicodeScalars.contains(where: Logfmt.isUnsafe))
        XCTAssertFalse(Logfmt.printable(all).unicodeScalars.contains(where: Logfmt.isUnsafe))
    }
}
