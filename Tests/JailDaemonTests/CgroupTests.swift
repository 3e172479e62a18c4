@testable import JailDaemon
import JailSystem
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
        XCTAssertEqual(MountInfoEntry.unescape("/a\\040b"), "/a b")
    }

    func testMountinfoLinesAreReadAsTheKernelWritesThem() {
        let text = """
            36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue
            37 36 0:5 / /a\\040b\\011c\\134d rw - tmpfs none rw,size=1k
            38 36 0:6 / /no/separator rw tmpfs none rw
            39 36 0:7 / /short/tail rw - tmpfs none
            40 36 0:8 / /x\\04 rw - tmpfs none rw
            41 36 0:9 /
            """
        XCTAssertEqual(MountInfoEntry.parseAll(text), [
            MountInfoEntry(mountPoint: "/mnt/parent", fsType: "ext3", superOptions: "rw,errors=continue"),
            MountInfoEntry(mountPoint: "/a b\tc\\d", fsType: "tmpfs", superOptions: "rw,size=1k"),
            MountInfoEntry(mountPoint: "/x\\04", fsType: "tmpfs", superOptions: "rw"),
        ])
        XCTAssertEqual(MountInfoEntry.parseAll(""), [])
        XCTAssertEqual(MountInfoEntry.unescape("/a\\777b\\0"), "/a\\777b\\0")
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
