import CJail
@testable import JailDaemon
import JailProtocol
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class MountPlanTests: XCTestCase {
    func testRootPlanOrderWithoutUserNamespace() {
        var c = JailConfiguration(uid: 61000)
        c.userNamespace = false
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
        XCTAssertEqual(steps[steps.count - 2], .bind(host: "/srv/data", target: "/data", root: "/srv/jail", readOnly: true,
                                                     nosuidNodev: true))
        // No host device is ever bound into the jail.
        for case .bind(let host, _, _, _, _) in steps { XCTAssertFalse(host.hasPrefix("/dev")) }
        let devpts = steps.first { if case .mount(_, "/srv/jail/dev/pts", _, _, _) = $0 { true } else { false } }
        guard case .mount(_, _, "devpts", _, let data)? = devpts else { return XCTFail("no devpts") }
        XCTAssertTrue(data?.contains("newinstance") == true)
    }

    /// Root's user namespace: the idmapped root first, proc, then pivot and the namespace's
    /// root for everything else, inside (host paths are opened before any step).
    func testRootPlanInTheUserNamespace() {
        var c = JailConfiguration(uid: 61000)
        c.root = "/srv/jail"
        c.mounts = [BindMount(jailPath: "/data", hostPath: "/srv/data", readOnly: false, allowSetuid: true)]
        let steps = MountPlan(configuration: c).steps
        XCTAssertEqual(Array(steps.prefix(2)), [.makePrivate, .attachIdmappedRoot("/srv/jail")])
        let pivot = steps.firstIndex(of: .pivot("/srv/jail"))
        let proc = steps.firstIndex(of: .mount(source: "proc", target: "/srv/jail/proc", type: "proc",
                                                flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), data: nil))
        XCTAssertNotNil(pivot)
        XCTAssertLessThan(proc ?? 99, pivot ?? 0)
        XCTAssertEqual(steps[(pivot ?? 0) + 1], .becomeNamespaceRoot)
        XCTAssertTrue(steps.contains(.bind(host: "/sys", target: "/sys", root: "/", readOnly: true, nosuidNodev: true)))
        XCTAssertTrue(steps.contains(.bindDevice(host: "/dev/null", target: "/dev/null")))
        XCTAssertFalse(steps.contains { if case .makeCharacterDevice = $0 { true } else { false } })
        XCTAssertEqual(steps.last, .bind(host: "/srv/data", target: "/data", root: "/", readOnly: false, nosuidNodev: false))
        let devpts = steps.first { if case .mount(_, "/dev/pts", _, _, _) = $0 { true } else { false } }
        guard case .mount(_, _, "devpts", _, let data)? = devpts else { return XCTFail("no devpts") }
        XCTAssertTrue(data?.contains("gid=5,") == true)
    }

    func testNoRootPlanOnlyRemountsProc() {
        let steps = MountPlan(configuration: JailConfiguration(uid: 61000)).steps
        XCTAssertEqual(steps, [.makePrivate, .mount(source: "proc", target: "/proc", type: "proc",
                                                    flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), data: nil)])
    }

    /// --no-userns: init mounts the overlay itself, first.
    func testOverlayRootIsMountedFirst() {
        var c = JailConfiguration(uid: 63000)
        c.root = "/var/lib/jail/alice/root"
        c.base = "/var/lib/jail/bases/debian"
        c.userNamespace = false
        let steps = MountPlan(configuration: c).steps
        XCTAssertEqual(steps[1], .overlay(lower: "/var/lib/jail/bases/debian", upper: "/var/lib/jail/alice/upper",
                                          work: "/var/lib/jail/alice/work", target: "/var/lib/jail/alice/root"))
        XCTAssertEqual(steps[2], .mount(source: c.root!, target: c.root!, type: "", flags: UInt(MS_BIND | MS_REC), data: nil))
        XCTAssertEqual(steps.filter { if case .overlay = $0 { true } else { false } }.count, 1)
    }

    /// A root on a base has the user namespace: the supervisor mounts the overlay over
    /// idmapped layers and init attaches it; init mounts no overlay itself.
    func testOverlayRootHasTheUserNamespace() {
        var c = JailConfiguration(uid: 63000)
        c.root = "/var/lib/jail/alice/root"
        c.base = "/var/lib/jail/bases/debian"
        XCTAssertTrue(c.mapsRange)
        XCTAssertTrue(c.inUserNamespace)
        let steps = MountPlan(configuration: c).steps
        XCTAssertEqual(steps[1], .attachIdmappedRoot("/var/lib/jail/alice/root"))
        XCTAssertFalse(steps.contains { if case .overlay = $0 { true } else { false } })
    }
}
