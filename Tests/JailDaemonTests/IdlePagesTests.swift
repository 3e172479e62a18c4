import CJail
import Foundation
@testable import JailDaemon
import JailIO
import JailProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class IdlePagesTests: XCTestCase {
    func testWaitsABitWhileUsedThenForeverOnceReleased() {
        var pages = IdlePages()
        XCTAssertEqual(pages.timeout(-1), IdlePages.delayMilliseconds)
        XCTAssertEqual(pages.timeout(200), 200, "a sooner deadline of the loop's own wins")
        pages.afterWait(woke: true)
        XCTAssertEqual(pages.timeout(-1), IdlePages.delayMilliseconds)
        XCTAssertFalse(pages.releasesBeforeNextWait)
        pages.afterWait(woke: false)  // a quiet second: released in the next wait
        XCTAssertTrue(pages.releasesBeforeNextWait)
        XCTAssertEqual(pages.timeout(-1), -1)
        XCTAssertEqual(pages.timeout(300), 300)
        pages.afterWait(woke: true)
        XCTAssertEqual(pages.timeout(-1), IdlePages.delayMilliseconds)
    }

    func testReleasingKeepsWrittenDataAndCode() {
        // Pages this process wrote must survive; code and read-only data come back on use.
        var table = [Int](repeating: 0, count: 4096)
        for i in table.indices { table[i] = i &* 7 }
        cj_release_file_pages()
        XCTAssertEqual(table.reduce(0, &+), (0..<4096).reduce(0) { $0 &+ $1 &* 7 })
    }

    func testThePollThatReleasesFirstStillPolls() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        var entry = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(cj_poll_releasing_file_pages(&entry, 1, 0), 0, "nothing to read: a timeout")
        XCTAssertEqual(write(fds[1], "x", 1), 1)
        XCTAssertEqual(cj_poll_releasing_file_pages(&entry, 1, 5000), 1)
        XCTAssertNotEqual(entry.revents & Int16(POLLIN), 0)
        var byte: UInt8 = 0
        XCTAssertEqual(read(fds[0], &byte, 1), 1)
        XCTAssertEqual(byte, UInt8(ascii: "x"))
    }

    func testAnIdleWaitReleasesThenSleepsAndWakes() {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        var pages = IdlePages()
        var poller = Poller()
        poller.add(fds[0], read: true)
        pages.afterWait(woke: false)
        XCTAssertTrue(pages.releasesBeforeNextWait)
        XCTAssertEqual(write(fds[1], "y", 1), 1)
        XCTAssertEqual(pages.wait(&poller, timeout: -1), true)
        XCTAssertTrue(poller.readable(0))
        XCTAssertFalse(pages.releasesBeforeNextWait)
    }

    func testTakeReleaseSaysOnceAfterAnIdleWait() {
        var pages = IdlePages()
        XCTAssertFalse(pages.takeRelease())
        pages.afterWait(woke: false)
        XCTAssertTrue(pages.takeRelease())
        XCTAssertFalse(pages.takeRelease(), "one release per idle spell")
        pages.afterWait(woke: false)
        XCTAssertFalse(pages.takeRelease(), "still idle, already released")
    }

    /// Fills `depth` frames with values, releases at the deepest, then checks every frame on the
    /// way back: the release gives back only the stack below the caller's frame.
    private func deepFrames(_ depth: Int) -> Bool {
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 512) { frame in
            for i in 0..<512 { frame[i] = depth &* 1000 &+ i }
            let below = depth == 0 ? { cj_release_file_pages(); return true }() : deepFrames(depth - 1)
            return below && (0..<512).allSatisfy { frame[$0] == depth &* 1000 &+ $0 }
        }
    }

    func testReleasingKeepsTheLiveStack() {
        XCTAssertTrue(deepFrames(40))
    }

    func testReleasingGivesBackTheStackBelow() throws {
        // XCTest runs tests on the main thread; the release covers the main stack only.
        XCTAssertTrue(Thread.isMainThread, "the stack is released on the main thread only")
        // 40 frames of 4 KiB, returned from: resident below the stack pointer until released.
        XCTAssertTrue(deepFrames(40))
        let before = try stackResidentKiB()
        cj_release_file_pages()
        let after = try stackResidentKiB()
        XCTAssertLessThan(after, before - 100, "the stack's RSS went from \(before) to \(after) KiB")
    }

    private struct MissingStack: Error, CustomStringConvertible {
        var description: String { "no [stack] in /proc/self/smaps" }
    }

    private func stackResidentKiB() throws -> Int {
        // Read to the end: a /proc file's size says 0.
        let handle = try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/smaps"))
        defer { try? handle.close() }
        let smaps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        var inStack = false
        for line in smaps.split(separator: "\n") {
            if line.first?.isHexDigit == true && line.contains("-") && line.split(separator: " ").count >= 5 {
                inStack = line.hasSuffix("[stack]")
            } else if inStack && line.hasPrefix("Rss:") {
                return Int(line.split(separator: " ")[1]) ?? 0
            }
        }
        throw MissingStack()
    }

    func testTheRelaysBufferIsUsableAfterItsRelease() {
        let buffer = ReceiveBuffer()
        XCTAssertEqual(Int(bitPattern: buffer.bytes.baseAddress) % Int(sysconf(Int32(_SC_PAGESIZE))), 0)
        buffer.bytes.copyBytes(from: Array("<13>hello".utf8))
        XCTAssertEqual(Array(buffer.prefix(9)), Array("<13>hello".utf8))
        buffer.release()
        XCTAssertEqual(Array(buffer.prefix(4)), [0, 0, 0, 0], "released pages come back as zero pages")
        buffer.bytes.copyBytes(from: Array("again".utf8))
        XCTAssertEqual(Array(buffer.prefix(5)), Array("again".utf8))
        XCTAssertEqual(buffer.prefix(1 << 20).count, ReceiveBuffer.size, "a longer datagram is cut at the buffer")
    }
}
