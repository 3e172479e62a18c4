import JailSystem
import XCTest

/// A test case with a directory of its own under /tmp, made before each test and removed after
/// it (a removal that fails fails the test: a test leaves nothing behind).
class ScratchDirectoryTestCase: XCTestCase {
    var directory = ""

    /// The mkdtemp(3) template of the directory, unique per test class.
    class var template: String { "/tmp/jail-test-XXXXXX" }

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory(Self.template)
    }

    override func tearDownWithError() throws {
        let removal = try runProgram("/bin/rm", ["-rf", "--", directory])
        XCTAssertEqual(removal.status, 0, "rm -rf \(directory): \(removal.reason)")
    }
}
