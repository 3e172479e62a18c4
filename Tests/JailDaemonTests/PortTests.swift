@testable import JailDaemon
import XCTest

final class PortTests: XCTestCase {
    func testSpecsRangesAndOverlap() throws {
        let ports = try PortSet.parse("tcp:25,tcp:8000-8099,udp:53")
        XCTAssertEqual(ports.description, "tcp:25,tcp:8000-8099,udp:53")
        XCTAssertEqual(ports.ranges[1], PortSet.Range(proto: "tcp", low: 8000, high: 8099))
        for bad in ["25", "tcp:0", "tcp:9-8", "sctp:1", "tcp:70000", "tcp:", ""] {
            XCTAssertThrowsError(try PortSet.parse(bad), bad)
        }
        let other = try PortSet.parse("tcp:8050-9000,udp:25")
        XCTAssertEqual(ports.overlap(with: other).map { "\($0.proto):\($0.low)-\($0.high)" }, ["tcp:8050-8099"])
    }

    func testPortsWithoutCgroupV2AreRefused() {
        XCTAssertThrowsError(try PortFilter.attach(try PortSet.parse("tcp:25"), to: nil)) {
            XCTAssertTrue("\($0)".hasPrefix("--ports needs cgroup v2, which is not mounted on this host"))
        }
    }
}
