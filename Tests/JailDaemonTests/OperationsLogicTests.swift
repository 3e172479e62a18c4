@testable import JailDaemon
import XCTest

final class CgroupTests: XCTestCase {
    let mountinfo = """
        25 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw
        26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
        27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
        28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
        29 25 0:26 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
        30 1 0:27 / /mnt/with\\040space rw - cgroup2 cgroup2 rw
        """

    func testMountsAreReadFromMountinfo() {
        let mounts = CgroupMounts.parse(mountinfo: mountinfo)
        XCTAssertEqual(mounts.unified, "/sys/fs/cgroup/unified")
        XCTAssertEqual(mounts.v1["memory"], "/sys/fs/cgroup/memory")
        XCTAssertEqual(mounts.v1["cpu"], "/sys/fs/cgroup/cpu,cpuacct")
        XCTAssertEqual(mounts.v1["pids"], "/sys/fs/cgroup/pids")
        XCTAssertEqual(CgroupMounts.unescape("/a\\040b"), "/a b")
    }

    func testV2IsPreferredWhereItOffersTheController() throws {
        let mounts = CgroupMounts.parse(mountinfo: mountinfo)
        let limits = CgroupLimits(memory: 1 << 26, pids: 64, cpus: 0.5)
        let plan = try JailCgroups.plan(limits, mounts: mounts, offered: ["pids"])
        XCTAssertEqual(plan.v2, ["pids"])
        XCTAssertEqual(plan.v1, ["memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct"])
        let v1Only = CgroupMounts(unified: nil, v1: [:])
        XCTAssertThrowsError(try JailCgroups.plan(CgroupLimits(memory: 1), mounts: v1Only, offered: [])) {
            XCTAssertTrue("\($0)".contains("--memory needs the memory cgroup controller"))
        }
    }

    func testLimitFilesForBothVersions() {
        let limits = CgroupLimits(memory: 1 << 26, pids: 64, cpus: 0.5)
        let v2 = limits.files(unified: true, controllers: ["memory", "pids", "cpu"]).map { "\($0.file)=\($0.value)" }
        XCTAssertEqual(v2, ["memory.max=67108864", "memory.swap.max=0", "pids.max=64", "cpu.max=50000 100000"])
        let v1 = limits.files(unified: false, controllers: ["memory", "cpu"]).map { "\($0.file)=\($0.value)" }
        XCTAssertEqual(v1, ["memory.limit_in_bytes=67108864", "memory.memsw.limit_in_bytes=67108864",
                            "cpu.cfs_period_us=100000", "cpu.cfs_quota_us=50000"])
    }
}

final class OptionParsingTests: XCTestCase {
    func testSizesCapabilitiesAndRlimits() throws {
        XCTAssertEqual(ByteSize.parse("512M"), 512 << 20)
        XCTAssertEqual(ByteSize.parse("1.5G"), 3 << 29)
        XCTAssertEqual(ByteSize.parse("4096"), 4096)
        XCTAssertNil(ByteSize.parse("lots"))
        XCTAssertNil(ByteSize.parse("-1M"))
        XCTAssertEqual(try Capability.parse("cap_net_bind_service"), 10)
        XCTAssertThrowsError(try Capability.parse("SYS_ADMIN"))
        XCTAssertEqual(try ResourceLimit.parse("nofile=64:128"), ResourceLimit(name: "nofile", resource: 7, soft: 64, hard: 128))
        XCTAssertEqual(try ResourceLimit.parse("core=unlimited").hard, UInt64.max)
        XCTAssertThrowsError(try ResourceLimit.parse("nofile=9:8"))
        XCTAssertThrowsError(try ResourceLimit.parse("bogus=1"))
    }

    func testConfigFileLinesKeysAndErrors() throws {
        let text = "# a jail\nuid = 61000\n\nmount = /data=/srv/data:ro   # comment\nforeground = yes\nboot = echo hi\n"
        let entries = try ConfigFile.parse(text, path: "/etc/jail/x.conf")
        XCTAssertEqual(entries.map(\.line), [2, 4, 5, 6])
        XCTAssertEqual(try entries.flatMap { try ConfigFile.arguments(for: $0, path: "x") },
                       ["--uid", "61000", "--mount", "/data=/srv/data:ro", "--foreground", "--boot", "echo hi"])
        XCTAssertThrowsError(try ConfigFile.parse("uid = 1\nbogus = 2\n", path: "f")) {
            XCTAssertTrue("\($0)".hasPrefix("f:2: unknown key 'bogus'"))
        }
        XCTAssertThrowsError(try ConfigFile.parse("root\n", path: "f")) { XCTAssertTrue("\($0)".hasPrefix("f:1: expected")) }
        XCTAssertThrowsError(try ConfigFile.arguments(for: .init(line: 3, key: "foreground", value: "maybe"), path: "f")) {
            XCTAssertEqual("\($0)", "f:3: 'foreground' is yes or no, not 'maybe'")
        }
    }

    func testStateFileRoundTrip() {
        let state = JailState(socket: "/run/jail/jaild-1-1.sock", pidFile: "/run/jail/jaild-1-1.pid", uid: 1, gid: 1,
                              root: "/srv/a=b", supervisor: 10, initPid: 11, started: 1_700_000_000, cgroup: "", ports: "tcp:25")
        XCTAssertEqual(JailState.decode(state.encoded()), state)
        XCTAssertNil(JailState.decode("socket=/x\n"))
    }
}

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
