@testable import JailDaemon
import JailSystem
import SystemPackage
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The build id that tells a copy of jaild's file for the same build (ExecutableCache), and the
/// checks that refuse any other file under a copy's name.
final class ExecutableCacheTests: ScratchDirectoryTestCase {
    func testTheRunningProgramsBuildIdIsWhereItsFileHasIt() throws {
        let identity = try XCTUnwrap(BuildIdentity.ofRunningProgram(), "the test program was linked with --build-id")
        XCTAssertEqual(identity.bytes.count, 20)  // sha1, what the Swift toolchain's linker makes
        XCTAssertEqual(identity.hex.count, 40)
        let file = try openFile("/proc/self/exe", O_RDONLY)
        defer { closeDescriptor(file.rawValue) }
        XCTAssertTrue(try identity.isIn(file, path: "/proc/self/exe"))
        // Not a match by accident: one byte off is another id.
        var other = identity.bytes
        other[0] ^= 1
        XCTAssertFalse(try BuildIdentity(bytes: other, fileOffset: identity.fileOffset).isIn(file, path: "/proc/self/exe"))
    }

    func testHexIsLowerCaseTwoDigitsPerByte() {
        XCTAssertEqual(BuildIdentity(bytes: [0x00, 0x0f, 0xa5, 0xff], fileOffset: 0).hex, "000fa5ff")
    }

    func testOnlyARootOwnedCopyOfTheSameSizeAndIdIsUsable() throws {
        let identity = BuildIdentity(bytes: Array("build-id".utf8), fileOffset: 4)
        let path = directory + "/jaild-copy"
        func write(_ text: String, mode: mode_t) throws {
            XCTAssertTrue(try writeFile(path, text: text, mode: mode, .replace))
            try setMode(path, mode)
        }
        func found(size: Int64 = 16) throws -> String {
            switch try ExecutableCache.check(path, identity: identity, size: size) {
            case .usable(let file):
                closeDescriptor(file.rawValue)
                return "usable"
            case .absent: return "absent"
            case .notACopy(let reason): return reason
            }
        }
        XCTAssertEqual(try found(), "absent")
        try write("....build-id....", mode: 0o500)
        XCTAssertEqual(try found(), "usable")
        XCTAssertEqual(try found(size: 17), "16 bytes, jaild's file has 17")
        try write("....build-ix....", mode: 0o500)
        XCTAssertEqual(try found(), "another build id")
        try write("....build-id....", mode: 0o520)
        XCTAssertEqual(try found(), "writable by others than root")
        try syscall("chown", path: path) { chown(path, 65534, 0) }
        try setMode(path, 0o500)
        XCTAssertEqual(try found(), "owned by uid 65534")
        XCTAssertTrue(try removeFile(path))
        try syscall("symlink", path: path) { symlink("/proc/self/exe", path) }
        XCTAssertThrowsError(try found())  // O_NOFOLLOW: ELOOP, never the link's target
    }

    func testTheCopyIsWrittenIn2MiBPiecesButAroundTheKeptCode() {
        let mib: Int64 = 1 << 20
        XCTAssertEqual(ExecutableCache.pieces(size: 5 * mib + 100, kept: nil),
                       [0..<2 * mib, 2 * mib..<4 * mib, 4 * mib..<5 * mib + 100])
        // The kept code in the second window, in its second 64 KiB: that window is halved down
        // to 64 KiB pieces around it, the largest aligned pieces elsewhere.
        let kept = (2 * mib + 0x1a000)..<(2 * mib + 0x1a300)
        let k: Int64 = 1 << 10
        XCTAssertEqual(ExecutableCache.pieces(size: 5 * mib, kept: kept), [
            0..<2 * mib,
            2 * mib..<2 * mib + 64 * k, 2 * mib + 64 * k..<2 * mib + 128 * k, 2 * mib + 128 * k..<2 * mib + 256 * k,
            2 * mib + 256 * k..<2 * mib + 512 * k, 2 * mib + 512 * k..<3 * mib, 3 * mib..<4 * mib,
            4 * mib..<5 * mib,
        ])
        // Code across a 64 KiB boundary keeps both pieces small; the whole file is covered once.
        let across = (2 * mib + 64 * k - 16)..<(2 * mib + 64 * k + 16)
        let pieces = ExecutableCache.pieces(size: 5 * mib, kept: across)
        XCTAssertEqual(pieces.filter { $0.overlaps(across) }, [2 * mib..<2 * mib + 64 * k, 2 * mib + 64 * k..<2 * mib + 128 * k])
        XCTAssertEqual(pieces.first?.lowerBound, 0)
        XCTAssertEqual(pieces.last?.upperBound, 5 * mib)
        XCTAssertTrue(zip(pieces, pieces.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
    }
}
