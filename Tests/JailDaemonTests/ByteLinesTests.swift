import JailSystem
import XCTest

final class ByteLinesTests: XCTestCase {
    func testLinesAndFieldsKeepEmptyOnesAndALastLineWithoutNewline() {
        var lines: [String] = []
        var fields: [[String]] = []
        var text = "a:b::c\n\n:x\nlast"
        text.withUTF8 { bytes in
            ByteLines.forEach(in: bytes) { start, end in
                lines.append(ByteLines.text(bytes, start, end))
                var line: [String] = []
                ByteLines.forEachField(in: bytes, start, end, separator: UInt8(ascii: ":")) { line.append(ByteLines.text(bytes, $0, $1)) }
                fields.append(line)
            }
        }
        XCTAssertEqual(lines, ["a:b::c", "", ":x", "last"])
        XCTAssertEqual(fields, [["a", "b", "", "c"], [""], ["", "x"], ["last"]])
    }
}
