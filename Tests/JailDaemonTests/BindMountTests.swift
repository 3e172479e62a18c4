import CJail
@testable import JailDaemon
import JailProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class BindMountTests: XCTestCase {
    func testParse() throws {
        XCTAssertEqual(try BindMount.parse("/data=/srv/data"), BindMount(jailPath: "/data", hostPath: "/srv/data", readOnly: false))
        XCTAssertEqual(try BindMount.parse("/a//b/=/srv/x:ro"), BindMount(jailPath: "/a/b", hostPath: "/srv/x", readOnly: true))
        XCTAssertEqual(try BindMount.parse("/a=/h:rw").readOnly, false)
        XCTAssertEqual(try BindMount.parse("/a=/h").allowSetuid, false)
        XCTAssertEqual(try BindMount.parse("/a=/h:suid"), BindMount(jailPath: "/a", hostPath: "/h", readOnly: false, allowSetuid: true))
        XCTAssertEqual(try BindMount.parse("/a=/h:ro,suid"), BindMount(jailPath: "/a", hostPath: "/h", readOnly: true, allowSetuid: true))
        XCTAssertThrowsError(try BindMount.parse("/a=/h:ro,nodev"))
        XCTAssertThrowsError(try BindMount.parse("/a")) { XCTAssertEqual($0 as? BindMount.ParseError, .missingEquals("/a")) }
        XCTAssertThrowsError(try BindMount.parse("a=/b")) { XCTAssertEqual($0 as? BindMount.ParseError, .notAbsolute("a")) }
        XCTAssertThrowsError(try BindMount.parse("/a=/b:xx")) { XCTAssertEqual($0 as? BindMount.ParseError, .unknownOption("xx")) }
    }
}
