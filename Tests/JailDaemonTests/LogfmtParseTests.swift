import JailDaemon
import XCTest

final class LogfmtParseTests: XCTestCase {
    func testRoundTripOfHostileValues() {
        let values = ["plain", "", "with space", "q\"uote", "back\\slash", "nl\nx", "\u{1b}[31m", "é\u{202e}\u{85}", "a=b c=d"]
        for value in values {
            let line = Logfmt.line("session", [("id", "7"), ("command", value), ("tty", "stdio")])
            let fields = Logfmt.fields(line)
            XCTAssertEqual(fields["command"], value, line)
            XCTAssertEqual(fields["id"], "7")
            XCTAssertEqual(fields["tty"], "stdio")
        }
    }

    func testGarbageDoesNotTrap() {
        for text in ["=", "\"", "a=\"\\", "a=\"\\x", "a=\"\\u{", "a=\"\\u{zz}\"", "== = =\"", "k=\"\\x4"] {
            _ = Logfmt.fields(text)
        }
    }
}
