@testable import JailDaemon
import XCTest

final class LogLinesTests: XCTestCase {
    func split(_ chunks: [[UInt8]]) -> [(String, Bool)] {
        var splitter = LineSplitter()
        var lines: [(String, Bool)] = []
        for chunk in chunks { splitter.feed(chunk) { lines.append((String(decoding: $0, as: UTF8.self), $1)) } }
        splitter.finish { lines.append((String(decoding: $0, as: UTF8.self), $1)) }
        return lines
    }

    func testLinesAcrossChunks() {
        let lines = split([Array("a\nbc".utf8), Array("d\n\ne".utf8)])
        XCTAssertEqual(lines.map(\.0), ["a", "bcd", "", "e"])
        XCTAssertEqual(lines.map(\.1), [false, false, false, false])
    }

    func testLongLinesAreCutAt4KiB() {
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: 10_000)
        let lines = split([Array(big[..<3000]), Array(big[3000...]) + [10]])
        XCTAssertEqual(lines.map(\.0.count), [4096, 4096, 1808])
        XCTAssertEqual(lines.map(\.1), [true, true, false])
    }

    func testSixtyFourMiBWithoutNewlineIsLinearAndBounded() {
        var splitter = LineSplitter()
        let chunk = [UInt8](repeating: 65, count: 16384)
        var count = 0
        let start = ContinuousClock.now
        for _ in 0..<4096 {
            splitter.feed(chunk) { _, _ in count += 1 }
            XCTAssertLessThan(splitter.pending.count, LineSplitter.maxLine)
        }
        XCTAssertEqual(count, 64 << 20 / 4096)
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
    }

    func testEscaping() {
        XCTAssertEqual(LineSplitter.escaped(Array("plain text".utf8)), "plain text")
        XCTAssertEqual(LineSplitter.escaped([0x1B] + Array("[2J\rjaild: fake".utf8)), "\\x1b[2J\\x0djaild: fake")
        // C1 (U+009B CSI), a bidi override (U+202E), a lone 0x9B byte (bad UTF-8), DEL.
        XCTAssertEqual(LineSplitter.escaped([0x61, 0xc2, 0x9b, 0x33, 0x31, 0x6d, 0xe2, 0x80, 0xae, 0x62, 0x9b, 0x7f]),
                       "a\\x9b31m\\u{202e}b\u{fffd}\\x7f")
        XCTAssertEqual(LineSplitter.escaped(Array("héllo — ok".utf8)), "héllo — ok")
    }

    func testNoUnsafeScalarSurvivesAnyBytes() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...32, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            XCTAssertFalse(LineSplitter.escaped(bytes).unicodeScalars.contains(where: Logfmt.isUnsafe), "\(bytes)")
        }
    }

    func testBudget() {
        var budget = LogBudget(lines: 2, bytes: 100)
        XCTAssertEqual(budget.tick(now: 5000), 0)
        XCTAssertTrue(budget.admitLine())
        XCTAssertTrue(budget.admitLine())
        XCTAssertFalse(budget.admitLine())
        XCTAssertFalse(budget.admitLine())
        XCTAssertEqual(budget.timeout(now: 5200), 800)
        budget.consumed(bytes: 100)
        XCTAssertFalse(budget.mayRead)
        XCTAssertEqual(budget.tick(now: 5999), 0)
        XCTAssertEqual(budget.tick(now: 6000), 2)
        XCTAssertTrue(budget.mayRead)
        XCTAssertEqual(budget.timeout(now: 6000), -1)
        XCTAssertTrue(budget.admitLine())
    }
}
