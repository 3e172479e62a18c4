import CJail
@testable import JailDaemon
import JailProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class MountPlanTests: XCTestCase {
    func testRootPlanOrder() {
        var c = JailConfiguration(uid: 61000)
        c.root = "/srv/jail/"
        c.mounts = [BindMount(jailPath: "/data", hostPath: "/srv/data", readOnly: true)]
        let steps = MountPlan(configuration: c).steps
        XCTAssertEqual(steps.first, .makePrivate)
        XCTAssertEqual(steps.last, .pivot("/srv/jail"))
        XCTAssertEqual(steps[1], .mount(source: "/srv/jail", target: "/srv/jail", type: "", flags: UInt(MS_BIND | MS_REC), data: nil))
        XCTAssertTrue(steps.contains(.mount(source: "sysfs", target: "/srv/jail/sys", type: "sysfs",
                                            flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY), data: nil)))
        XCTAssertTrue(steps.contains(.makeCharacterDevice("/srv/jail/dev/urandom", major: 1, minor: 9)))
        XCTAssertTrue(steps.contains(.symlink(target: "pts/ptmx", at: "/srv/jail/dev/ptmx")))
        XCTAssertTrue(steps.contains(.mount(source: "tmpfs", target: "/srv/jail/run", type: "tmpfs",
                                            flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=755,size=65536k")))
        XCTAssertEqual(steps[steps.count - 2], .bind(host: "/srv/data", target: "/data", root: "/srv/jail", readOnly: true))
        // No host device is ever bound into the jail.
        for case .bind(let host, _, _, _) in steps { XCTAssertFalse(host.hasPrefix("/dev")) }
        let devpts = steps.first { if case .mount(_, "/srv/jail/dev/pts", _, _, _) = $0 { true } else { false } }
        guard case .mount(_, _, "devpts", _, let data)? = devpts else { return XCTFail("no devpts") }
        XCTAssertTrue(data?.contains("newinstance") == true)
    }

    func testNoRootPlanOnlyRemountsProc() {
        let steps = MountPlan(configuration: JailConfiguration(uid: 61000)).steps
        XCTAssertEqual(steps, [.makePrivate, .mount(source: "proc", target: "/proc", type: "proc",
                                                    flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), data: nil)])
    }

    func testOverlayRootIsMountedFirst() {
        var c = JailConfiguration(uid: 63000)
        c.root = "/var/lib/jail/alice/root"
        c.base = "/var/lib/jail/bases/debian"
        let steps = MountPlan(configuration: c).steps
        XCTAssertEqual(steps[1], .overlay(lower: "/var/lib/jail/bases/debian", upper: "/var/lib/jail/alice/upper",
                                          work: "/var/lib/jail/alice/work", target: "/var/lib/jail/alice/root"))
        XCTAssertEqual(steps[2], .mount(source: c.root!, target: c.root!, type: "", flags: UInt(MS_BIND | MS_REC), data: nil))
        XCTAssertEqual(steps.filter { if case .overlay = $0 { true } else { false } }.count, 1)
    }
}
