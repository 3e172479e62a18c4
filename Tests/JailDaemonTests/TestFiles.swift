import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Files the unit tests lay out in a scratch directory (cgroup and /proc look-alikes): one copy
/// for every test class.
extension XCTestCase {
    /// `text` written to `path` (created or truncated); a step that fails fails the test.
    func writeFixture(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0, path)
        defer { close(fd) }
        let bytes = Array(text.utf8)
        XCTAssertEqual(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }, bytes.count)
    }

    /// mkdir -p: 0, or -1 when a step fails.
    func makeFixtureDirectories(_ path: String) -> Int32 {
        var partial = ""
        for part in path.split(separator: "/") {
            partial += "/" + part
            if mkdir(partial, 0o755) < 0 && errno != EEXIST { return -1 }
        }
        return 0
    }
}
