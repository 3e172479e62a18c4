@testable import JailDaemon
import XCTest

final class SyslogMessageTests: XCTestCase {
    func rewrite(_ s: String, limit: Int = SyslogMessage.defaultLimit) -> String {
        String(decoding: SyslogMessage.rewrite(Array(s.utf8)[...], jail: "mail", limit: limit), as: UTF8.self)
    }

    func testRFC3164FromSyslog3() {
        XCTAssertEqual(rewrite("<14>Dec  1 07:40:00 app[42]: hello"), "<14>jail/mail: app[42]: hello")
        XCTAssertEqual(rewrite("<13>Dec 11 07:40:00 app: hello\n"), "<13>jail/mail: app: hello")
    }

    func testAClaimedHostnameOrTagStaysBehindTheJailsTag() {
        XCTAssertEqual(rewrite("<38>Dec  1 07:40:00 otherhost sshd[1]: Accepted publickey for root"),
                       "<38>jail/mail: otherhost sshd[1]: Accepted publickey for root")
        XCTAssertEqual(rewrite("<38>jail/other: hi"), "<38>jail/mail: jail/other: hi")
    }

    func testRFC5424HostnameIsDropped() {
        XCTAssertEqual(rewrite("<165>1 2026-12-01T07:40:00Z otherhost app 99 ID47 - hello"), "<165>jail/mail: app[99]: hello")
        XCTAssertEqual(rewrite("<165>1 2026-12-01T07:40:00Z host - - - [x@1 a=\"b\"] m"), "<165>jail/mail: [x@1 a=\"b\"] m")
    }

    func testNoPriorityOrABadOne() {
        XCTAssertEqual(rewrite("plain"), "<13>jail/mail: plain")
        XCTAssertEqual(rewrite("<999>x"), "<13>jail/mail: <999>x")
        XCTAssertEqual(rewrite("<"), "<13>jail/mail: <")
        XCTAssertEqual(rewrite(""), "<13>jail/mail: ")
    }

    func testKernelFacilityBecomesUser() {
        XCTAssertEqual(rewrite("<0>panic"), "<8>jail/mail: panic")
        XCTAssertEqual(rewrite("<6>x"), "<14>jail/mail: x")
    }

    func testControlCharactersCannotSplitTheLine() {
        XCTAssertEqual(rewrite("<13>a\nb\rc\u{1b}[2J\td"), "<13>jail/mail: a#012b#015c#033[2J\td")
        XCTAssertEqual(rewrite("<13>1 - - ta\ng - - - m"), "<13>jail/mail: ta#012g: m")
    }

    func testLongMessagesAreTruncatedNotDropped() {
        let out = rewrite("<13>" + String(repeating: "x", count: 20000), limit: 8192)
        XCTAssertEqual(out.utf8.count, 8192)
        XCTAssertTrue(out.hasSuffix(" [truncated from 20004 bytes]"))
        XCTAssertTrue(out.hasPrefix("<13>jail/mail: xxx"))
    }

    func testHostileBytesDoNotTrap() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let out = SyslogMessage.rewrite(([60, 49] + bytes)[...], jail: "j", limit: 100)
            XCTAssertLessThanOrEqual(out.count, 100 + 40)
            XCTAssertFalse(out.contains(10))
        }
    }

    func testC1AndBidiBecomeOctalPerByte() {
        XCTAssertEqual(rewrite("<13>a\u{9b}31mb\u{202e}c\u{2066}d é"), "<13>jail/mail: a#302#23331mb#342#200#256c#342#201#246d é")
        XCTAssertEqual(rewrite("<13>1 - - t\u{9b}a - - - m"), "<13>jail/mail: t#302#233a: m")
        // Bytes that are not UTF-8 (a lone 0x9B is CSI to an 8-bit terminal) are kept, escaped.
        let out = SyslogMessage.rewrite([60, 49, 51, 62, 0x61, 0x9b, 0xc2, 0xff][...], jail: "mail")
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "<13>jail/mail: a#233#302#377")
    }

    func testNoUnsafeScalarSurvivesAnyBytes() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let out = SyslogMessage.rewrite(([60, 49, 62] + bytes)[...], jail: "j", limit: 60)
            let text = String(validating: out, as: UTF8.self)
            XCTAssertNotNil(text, "\(bytes)")
            // A message keeps its tabs (they split nothing); nothing else unsafe passes.
            XCTAssertFalse(text?.unicodeScalars.contains { $0 != "\t" && Logfmt.isUnsafe($0) } ?? true, "\(bytes)")
        }
    }

    func testTruncationNeverSplitsACharacter() {
        let out = SyslogMessage.rewrite(Array(("<13>" + String(repeating: "é", count: 100)).utf8)[...], jail: "mail", limit: 100)
        XCTAssertNotNil(String(validating: out, as: UTF8.self))
        XCTAssertLessThanOrEqual(out.count, 100)
    }

    func testBudgetLimitsMessagesAndBytes() {
        var budget = SyslogBudget(messages: 3, bytes: 1000)
        XCTAssertNil(budget.tick(now: 5000))
        XCTAssertTrue(budget.fits(400))
        budget.forwarded(400)
        XCTAssertTrue(budget.fits(600))
        budget.forwarded(600)
        XCTAssertTrue(budget.isSpent)
        XCTAssertFalse(budget.fits(1))
        budget.dropped(8000)
        XCTAssertEqual(budget.timeout(now: 5300), 700)
        XCTAssertNil(budget.tick(now: 5999))
        XCTAssertEqual(budget.tick(now: 6000), SyslogBudget.Drops(messages: 1, bytes: 8000))
        XCTAssertEqual(budget.timeout(now: 6000), -1)
        for _ in 0..<3 {
            XCTAssertTrue(budget.fits(10))
            budget.forwarded(10)
        }
        XCTAssertTrue(budget.isSpent)
        XCTAssertFalse(budget.fits(10))
        XCTAssertNil(budget.tick(now: 6500))
        XCTAssertNil(budget.tick(now: 7000), "nothing was dropped")
        XCTAssertEqual(SyslogBudget().bytes, 256 << 10)
        XCTAssertEqual(SyslogBudget().messages, 1000)
    }

    func testAMessageThatDoesNotFitEndsTheSecond() {
        var budget = SyslogBudget(messages: 100, bytes: 1000)
        _ = budget.tick(now: 1000)
        XCTAssertTrue(budget.fits(900))
        budget.forwarded(900)
        XCTAssertFalse(budget.fits(200))
        budget.dropped(200)
        XCTAssertFalse(budget.fits(50), "spent until the next second")
        XCTAssertEqual(budget.tick(now: 2000), SyslogBudget.Drops(messages: 1, bytes: 200))
        XCTAssertTrue(budget.fits(50))
    }
}
