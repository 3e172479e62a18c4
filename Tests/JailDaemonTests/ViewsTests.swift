import CJail
@testable import JailDaemon
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Issue 31: the jail's own views, as data (the mount plan, CPU sets, /etc/hosts, the cgroup
/// hierarchies init mounts).
final class ViewsTests: XCTestCase {
    func testShmIsHalfTheMemoryOrItsOwnSizeOrTheOld64MiB() {
        var c = JailConfiguration(uid: 61000)
        XCTAssertEqual(c.shmBytes, 64 << 20)
        c.limits.memory = 512 << 20
        XCTAssertEqual(c.shmBytes, 256 << 20)
        c.shmSize = 100 << 20
        XCTAssertEqual(c.shmBytes, 100 << 20)
        c.root = "/srv/jail"
        let shm = MountPlan(configuration: c).steps.first { if case .mount(_, "/dev/shm", _, _, _) = $0 { true } else { false } }
        guard case .mount(_, _, "tmpfs", _, let data)? = shm else { return XCTFail("no /dev/shm") }
        XCTAssertEqual(data, "mode=1777,size=102400k")
        XCTAssertEqual(MountPlan.kibibytes(1), 4)
    }

    func testLxcfsFilesAreBoundReadOnlyOnlyWhenInUse() {
        var c = JailConfiguration(uid: 61000)
        c.root = "/srv/jail"
        XCTAssertFalse(MountPlan(configuration: c).steps.contains { if case .bind(let host, _, _, _, _) = $0 { host.hasPrefix("/var/lib/lxcfs") } else { false } })
        c.lxcfsInUse = "/var/lib/lxcfs"
        let steps = MountPlan(configuration: c).steps
        for file in LxcfsViews.files {
            XCTAssertTrue(steps.contains(.bind(host: "/var/lib/lxcfs" + file, target: file, root: "/", readOnly: true, nosuidNodev: true)), file)
        }
        // After /proc and /sys exist, and before the pivot of a plan without a user namespace.
        c.userNamespace = false
        let plain = MountPlan(configuration: c).steps
        let meminfo = plain.firstIndex(of: .bind(host: "/var/lib/lxcfs/proc/meminfo", target: "/proc/meminfo", root: "/srv/jail",
                                                 readOnly: true, nosuidNodev: true))
        XCTAssertNotNil(meminfo)
        XCTAssertLessThan(meminfo ?? 99, plain.firstIndex(of: .pivot("/srv/jail")) ?? 0)
    }

    func testTheHostsCgroupTreeIsCoveredInAJailWithARoot() {
        var c = JailConfiguration(uid: 61000)
        XCTAssertFalse(c.cgroupNamespace)
        c.root = "/srv/jail"
        XCTAssertTrue(c.cgroupNamespace)
        XCTAssertTrue(MountPlan(configuration: c).steps.contains(.mount(source: "tmpfs", target: "/sys/fs/cgroup", type: "tmpfs",
                                                                         flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC),
                                                                         data: "mode=755,size=64k")))
    }

    func testViewsModeChoosesLxcfsOrTheHostsWithOneWarning() {
        let missing = "/nonexistent-lxcfs"
        let auto = LxcfsViews.choose(.auto, directory: missing)
        XCTAssertNil(auto.directory)
        XCTAssertNil(auto.error)
        XCTAssertTrue(auto.warning?.contains("lxcfs is not mounted at \(missing)") == true)
        let required = LxcfsViews.choose(.required, directory: missing)
        XCTAssertNil(required.directory)
        XCTAssertTrue(required.error?.hasPrefix("--views required") == true)
        let off = LxcfsViews.choose(.off, directory: missing)
        XCTAssertNil(off.directory)
        XCTAssertNil(off.warning)
        XCTAssertNil(off.error)
        // A plain directory is not a FUSE mount.
        XCTAssertEqual(LxcfsViews.probe("/tmp"), .absent)
    }

    func testCPUListsParseAndFormat() {
        XCTAssertEqual(CPUSet.parse("0-3,6"), [0, 1, 2, 3, 6])
        XCTAssertEqual(CPUSet.parse("1\n"), [1])
        XCTAssertEqual(CPUSet.parse("3,1,1"), [1, 3])
        for bad in ["", "a", "3-1", "-1", "1-", "1,,2", "5000"] { XCTAssertNil(CPUSet.parse(bad), bad) }
        XCTAssertEqual(CPUSet.format([0, 1, 2, 3, 6]), "0-3,6")
        XCTAssertEqual(CPUSet.format([5]), "5")
    }

    func testCPUsAreSpreadOverTheLeastUsed() {
        XCTAssertEqual(CPUSet.pick(cpus: 1, online: [0, 1], used: [:]), [0])
        XCTAssertEqual(CPUSet.pick(cpus: 1, online: [0, 1], used: [0: 1]), [1])
        XCTAssertEqual(CPUSet.pick(cpus: 0.5, online: [0, 1, 2, 3], used: [0: 2, 1: 1, 2: 1]), [3])
        XCTAssertEqual(CPUSet.pick(cpus: 1.5, online: [0, 1, 2, 3], used: [0: 2, 1: 1, 2: 0, 3: 1]), [1, 2])
        XCTAssertEqual(CPUSet.pick(cpus: 8, online: [0, 1], used: [:]), [0, 1])
    }

    func testCpusetIsALimitOfProgramsAndSessions() {
        let limits = CgroupLimits(cpus: 1, cpuset: [1])
        XCTAssertTrue(limits.controllers.contains { $0 == ("cpuset", "--cpus") })
        XCTAssertTrue(limits.files(unified: false, controllers: ["cpuset"]).contains { $0.file == "cpuset.cpus" && $0.value == "1" })
        XCTAssertEqual(limits.sessionLimits?.cpuset, [1])
        XCTAssertTrue(CgroupLimits(cpuset: [0, 1]).controllers.contains { $0 == ("cpuset", "--cpuset") })
    }

    func testEtcHostsGetsTheNameOnceAndKeepsTheRest() {
        let debian = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
        XCTAssertEqual(EtcHosts.adding("wl", to: debian), debian + "127.0.1.1\twl\n")
        XCTAssertEqual(EtcHosts.adding("wl.example.org", to: "127.0.0.1 localhost"),
                       "127.0.0.1 localhost\n127.0.1.1\twl.example.org wl\n")
        XCTAssertNil(EtcHosts.adding("wl", to: debian + "10.0.0.5 wl # the tenant's own\n"))
        XCTAssertNil(EtcHosts.adding("WL", to: "127.0.1.1 wl\n"))
        // A comment or an address is not a name.
        XCTAssertNotNil(EtcHosts.adding("wl", to: "# wl\n"))
        XCTAssertNotNil(EtcHosts.adding("127.0.0.1", to: "127.0.0.1 localhost\n"))
        XCTAssertTrue(EtcHosts.fresh(for: "wl").hasSuffix("127.0.1.1\twl\n"))
    }

    func testInitMountsOnlyTheJailsHierarchies() {
        let mountinfo = """
        30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
        31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
        40 30 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
        41 25 0:39 / /mnt/elsewhere rw - cgroup cgroup rw,pids
        """
        let all = CgroupView.hostHierarchies(mountinfo: mountinfo)
        XCTAssertEqual(all, [
            .init(mountPoint: "/sys/fs/cgroup/cpu", type: "cgroup", options: "cpu"),
            .init(mountPoint: "/sys/fs/cgroup/memory", type: "cgroup", options: "memory"),
            .init(mountPoint: "/sys/fs/cgroup/cpu,cpuacct", type: "cgroup", options: "cpu,cpuacct"),
            .init(mountPoint: "/sys/fs/cgroup/unified", type: "cgroup2", options: ""),
        ])
        let own = CgroupView.jailHierarchies(all, cgroupFile: "4:memory:/jail/a\n1:cpu:/\n0::/jail/a/\n9:name=systemd:/jail/x\n")
        XCTAssertEqual(own.map(\.mountPoint), ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"])
    }
}
