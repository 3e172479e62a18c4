import JailDaemon
import XCTest

final class UtmpTests: XCTestCase {
    func testLayoutIsGlibcX86_64() {
        let entry = Utmp.Entry(type: Utmp.userProcess, pid: 0x01020304, tty: "/dev/pts/12", user: "work",
                               host: "127.0.0.1", now: timespec(tv_sec: 0x11223344, tv_nsec: 5_000_000))
        let bytes = entry.encoded()
        XCTAssertEqual(bytes.count, 384)
        XCTAssertEqual(Array(bytes[0..<2]), [7, 0])
        XCTAssertEqual(Array(bytes[4..<8]), [4, 3, 2, 1])
        XCTAssertEqual(Array(bytes[8..<14]), Array("pts/12".utf8))
        XCTAssertEqual(bytes[14], 0)
        XCTAssertEqual(Array(bytes[40..<42]), Array("12".utf8))
        XCTAssertEqual(Array(bytes[44..<48]), Array("work".utf8))
        XCTAssertEqual(Array(bytes[76..<85]), Array("127.0.0.1".utf8))
        XCTAssertEqual(Array(bytes[340..<344]), [0x44, 0x33, 0x22, 0x11])
        XCTAssertEqual(Array(bytes[344..<348]), [0x88, 0x13, 0, 0])  // 5000 µs
        XCTAssertEqual(Utmp.Entry.decode(bytes[...]), entry)
    }

    /// sysvinit's records: `runlevel` reads ut_pid = level + 256 × previous ('N') of RUN_LVL.
    func testBootRecordsAreSysvinits() {
        let records = Utmp.bootRecords(runlevel: "2", now: timespec(tv_sec: 100, tv_nsec: 0))
        XCTAssertEqual(records.map(\.type), [Utmp.bootTime, Utmp.runLevel])
        XCTAssertEqual(records.map(\.user), ["reboot", "runlevel"])
        XCTAssertEqual(records.map(\.line), ["~", "~"])
        XCTAssertEqual(records.map(\.id), ["~~", "~~"])
        XCTAssertEqual(records[1].pid, Int32(UInt8(ascii: "2")) + 256 * Int32(UInt8(ascii: "N")))
        XCTAssertEqual(Utmp.Entry.decode(records[1].encoded()[...]), records[1])
    }

    func testDeadEntryKeepsLineAndPidOnly() {
        let entry = Utmp.Entry(type: Utmp.userProcess, pid: 9, tty: "/dev/pts/0", user: "work", host: "h",
                               now: timespec(tv_sec: 1, tv_nsec: 0))
        let dead = entry.dead(now: timespec(tv_sec: 2, tv_nsec: 0))
        XCTAssertEqual(dead.type, Utmp.deadProcess)
        XCTAssertEqual(dead.line, "pts/0")
        XCTAssertEqual(dead.id, "0")
        XCTAssertEqual(dead.pid, 9)
        XCTAssertEqual(dead.user, "")
        XCTAssertEqual(dead.seconds, 2)
    }

    func testLongFieldsAreCutNotOverflowed() {
        let entry = Utmp.Entry(type: Utmp.userProcess, pid: 1, tty: "/dev/pts/1", user: String(repeating: "u", count: 100),
                               host: String(repeating: "h", count: 1000), now: timespec())
        let bytes = entry.encoded()
        XCTAssertEqual(bytes.count, 384)
        XCTAssertEqual(Array(bytes[44..<76]), Array(repeating: UInt8(ascii: "u"), count: 32))
        XCTAssertEqual(Array(bytes[332..<384]), Array(repeating: 0, count: 52))
    }

    func testDecodeRefusesAShortRecord() {
        XCTAssertNil(Utmp.Entry.decode([UInt8](repeating: 0, count: 383)[...]))
    }
}
