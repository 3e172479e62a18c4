@testable import JailDaemon
import XCTest

/// `--disk`, `--disk-inodes`, `--disk-backend` as typed, and the image's size arithmetic.
final class DiskLimitTests: XCTestCase {
    func testSizesAndInodes() throws {
        XCTAssertEqual(try DiskLimit.parse(size: "64M", inodes: "2000", backend: "image"),
                       DiskLimit(bytes: 64 << 20, inodes: 2000, backend: .image))
        XCTAssertEqual(try DiskLimit.parse(size: "10G", inodes: nil, backend: nil), DiskLimit(bytes: 10 << 30, backend: .auto))
        XCTAssertNil(try DiskLimit.parse(size: nil, inodes: nil, backend: nil))
    }

    func testBadInputIsOneLine() {
        let bad: [(String?, String?, String?)] = [("0", nil, nil), ("1K", nil, nil), ("15M", nil, nil), ("ten", nil, nil), ("-5G", nil, nil),
                                                   ("64M", "x", nil), ("64M", "10", nil), ("64M", nil, "zfs"), (nil, "2000", nil),
                                                   (nil, nil, "image")]
        for (size, inodes, backend) in bad {
            XCTAssertThrowsError(try DiskLimit.parse(size: size, inodes: inodes, backend: backend)) { error in
                let text = "\(error)"
                XCTAssertFalse(text.isEmpty || text.contains("\n"), text)
            }
        }
    }

    /// The tenant gets SIZE: the file is SIZE plus ext4's own (journal, inode tables, a little).
    func testImageIsSizePlusItsBookkeeping() {
        let small = DiskLimit(bytes: 64 << 20, inodes: 2000)
        XCTAssertEqual(DiskImage.journalBytes(for: small.bytes), 4 << 20)
        XCTAssertEqual(DiskImage.inodes(for: small), 2000)
        let file = DiskImage.fileBytes(for: small)
        XCTAssertGreaterThan(file, (64 << 20) + (4 << 20))
        XCTAssertLessThan(file, 72 << 20)
        XCTAssertEqual(file % 4096, 0)
        let big = DiskLimit(bytes: 100 << 30)
        XCTAssertEqual(DiskImage.journalBytes(for: big.bytes), 256 << 20)
        XCTAssertEqual(DiskImage.inodes(for: big), (100 << 30) / 16384)
    }

    func testConfigKeys() {
        for key in ["disk", "disk-inodes", "disk-backend"] { XCTAssertEqual(ConfigFile.keys[key], true, key) }
    }
}
