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

    func testJailsWithoutPortsOrCgroupV2NeedNothing() throws {
        XCTAssertNoThrow(try PortFilter.attach(nil, to: nil))
    }

    func testOwnedPortsMapEntries() throws {
        let a = try PortSet.parse("tcp:25,udp:53-54")
        let b = try PortSet.parse("tcp:25-26,udp:65535")
        let (keys, owners) = OwnedPorts.entries([(owner: 7, ports: a), (owner: 9, ports: b)])
        let expected: [UInt32] = [0x06_0019, 0x11_0035, 0x11_0036, 0x06_001A, 0x11_FFFF]
        XCTAssertEqual(keys, expected)
        XCTAssertEqual(owners, [7, 7, 7, 9, 9])  // a shared port names its first owner
        XCTAssertEqual(OwnedPorts.key(protocol: 17, port: 53), 0x11_0035)
    }

    func testReservedPortsKeepTheAdministratorsAndTakeBackJailds() {
        XCTAssertEqual(ReservedPorts.parse("8080,9000-9002\n"), [8080, 9000, 9001, 9002])
        XCTAssertEqual(ReservedPorts.parse(""), [])
        XCTAssertNil(ReservedPorts.parse("9-8"))
        XCTAssertEqual(ReservedPorts.format([5, 1, 2, 3, 65535]), "1-3,5,65535")
        // The administrator reserved 8080 and 25; jaild had added 40000; now jails own 25 and 41000.
        let (reserved, added) = ReservedPorts.plan(current: [8080, 25, 40000], previouslyAdded: [40000], owned: [25, 41000])
        XCTAssertEqual(reserved, [8080, 25, 41000])
        XCTAssertEqual(added, [41000])  // 25 stays the administrator's when its jail stops
        XCTAssertEqual(ReservedPorts.plan(current: [8080, 41000], previouslyAdded: [41000], owned: []).reserved, [8080])
    }
}
