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

    func testPortsWithoutCgroupV2AreRefused() throws {
        var configuration = JailConfiguration(uid: 1000)
        configuration.ports = try PortSet.parse("tcp:25")
        XCTAssertThrowsError(try PortFilter.attach(configuration, jail: "t", socket: "/t.sock", to: nil)) {
            XCTAssertTrue("\($0)".hasPrefix("--ports, --address and --loopback need cgroup v2, which is not mounted on this host"))
        }
    }

    func testJailsWithoutPortsOrCgroupV2NeedNothing() throws {
        XCTAssertNoThrow(try PortFilter.attach(JailConfiguration(uid: 1000), jail: "t", socket: "/t.sock", to: nil))
    }

    func testOwnedPortsMapEntries() throws {
        let a = try PortSet.parse("tcp:25,udp:53-54")
        let b = try PortSet.parse("tcp:25-26,udp:65535")
        let (keys, owners) = OwnedPorts.entries([(owner: 7, ownership: Ownership(ports: a)), (owner: 9, ownership: Ownership(ports: b))])
        let expected: [UInt32] = [0x06_0019, 0x11_0035, 0x11_0036, 0x06_001A, 0x11_FFFF]
        XCTAssertEqual(keys.map(\.port), expected)
        XCTAssertEqual(Set(keys.map(\.address)), [Array(repeating: 0, count: 16)])  // every address
        XCTAssertEqual(owners, [7, 7, 7, 9, 9])  // a shared port names its first owner
        XCTAssertEqual(OwnedPorts.key(protocol: 17, port: 53), 0x11_0035)
    }

    func testOwnedPortsByAddress() throws {
        let ports = try PortSet.parse("tcp:25")
        let ten = try XCTUnwrap(HostAddress.parse("192.0.2.10")), eleven = try XCTUnwrap(HostAddress.parse("192.0.2.11"))
        let loopback = try XCTUnwrap(HostAddress.parse("127.77.0.1"))
        let (keys, owners) = OwnedPorts.entries([
            (owner: 7, ownership: Ownership(ports: ports, addresses: [ten], loopback: loopback)),
            (owner: 9, ownership: Ownership(ports: ports, addresses: [eleven])),
        ])
        let mapped: (HostAddress) -> [UInt8] = { Array(repeating: 0, count: 10) + [0xff, 0xff] + $0.bytes }
        XCTAssertEqual(keys, [
            OwnedPorts.Key(port: 0x06_0019, address: mapped(ten)),
            OwnedPorts.Key(port: 0x06_0019, address: Array(repeating: 0xff, count: 16)),  // "somewhere": wildcard binds
            OwnedPorts.Key(port: 0, address: mapped(loopback)),                            // the loopback, whole
            OwnedPorts.Key(port: 0x06_0019, address: mapped(eleven)),
        ])
        XCTAssertEqual(owners, [7, 7, 7, 9])
        let record = Ownership(ports: ports, addresses: [ten], loopback: loopback)
        XCTAssertEqual(record.description, "tcp:25\naddress 192.0.2.10\nloopback 127.77.0.1\n")
        XCTAssertEqual(Ownership.parse(record.description), record)
        XCTAssertEqual(Ownership.parse("tcp:25"), Ownership(ports: ports))  // a record of a jaild before addresses
        XCTAssertEqual(Ownership.parse("\nloopback 127.77.0.1\n"), Ownership(ports: nil, loopback: loopback))
        XCTAssertNil(Ownership.parse("tcp:25\naddress nonsense\n"))
    }

    func testAddressesAndLoopbackPool() throws {
        XCTAssertEqual(HostAddress.parse("192.0.2.10")?.description, "192.0.2.10")
        XCTAssertEqual(HostAddress.parse("2001:db8::10")?.description, "2001:db8::10")
        XCTAssertNil(HostAddress.parse("192.0.2"))
        XCTAssertEqual(HostAddress.parse("127.0.0.1")?.loopbackProblem, "127.0.0.1 is the host's own loopback address")
        XCTAssertNotNil(HostAddress.parse("10.0.0.1")?.loopbackProblem)
        XCTAssertNil(HostAddress.parse("127.5.0.1")?.loopbackProblem)
        let pool = try LoopbackPool.parse("127.0.0.0/30")
        XCTAssertEqual(pool.addresses.map(\.description), ["127.0.0.2"])  // not .0, .1 (the host's) nor .3
        XCTAssertEqual(LoopbackPool.standard.description, "127.77.0.1-127.77.255.254")
        XCTAssertThrowsError(try LoopbackPool.parse("10.0.0.0/8"))
        var configuration = JailConfiguration(uid: 1000)
        configuration.addresses = [try XCTUnwrap(HostAddress.parse("127.0.0.5"))]
        XCTAssertEqual(configuration.addressProblem, "--address 127.0.0.5: a 127/8 address is a jail's --loopback, not its --address")
        configuration.addresses = [try XCTUnwrap(HostAddress.parse("192.0.2.10"))]
        XCTAssertNil(configuration.addressProblem)
        XCTAssertEqual(configuration.loopbackChoice, .auto)
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
