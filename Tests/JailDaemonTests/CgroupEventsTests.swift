@testable import JailDaemon
import XCTest

final class CgroupEventsTests: XCTestCase {
    let prefix = "/jail/61000-61000/"

    func testTheVictimOfThisJailIsTaken() {
        let record = "6,812,123456,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
            + "oom_memcg=/jail/61000-61000/programs,task_memcg=/jail/61000-61000/programs,task=tail,pid=4242,uid=61000\n"
        let victim = CgroupEvents.victim(record: record, memcgPrefix: prefix)
        XCTAssertEqual(victim?.pid, "4242")
        XCTAssertEqual(victim?.name, "tail")
    }

    func testAnotherJailsVictimOrAnotherRecordIsNot() {
        let other = "6,812,1,-;oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=/jail/61000-61000x/programs,task=tail,pid=1,uid=0"
        XCTAssertNil(CgroupEvents.victim(record: other, memcgPrefix: prefix))
        XCTAssertNil(CgroupEvents.victim(record: "6,1,1,-;Killed process 1 (tail)", memcgPrefix: prefix))
    }

    func testANameChosenInsideCannotMoveTheKernelsFields() {
        // comm is the jail's: it may hold the field separators themselves.
        let record = "6,9,1,-;oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=/jail/61000-61000/programs,task=a,pid=7,x,pid=99,uid=61000"
        let victim = CgroupEvents.victim(record: record, memcgPrefix: prefix)
        XCTAssertEqual(victim?.pid, "99")
        XCTAssertEqual(victim?.name, "a,pid=7,x")
    }

    func testRestartPolicies() {
        XCTAssertFalse(BootRestart.no.restarts(status: 137))
        XCTAssertTrue(BootRestart.onFailure.restarts(status: 137))
        XCTAssertFalse(BootRestart.onFailure.restarts(status: 0))
        XCTAssertTrue(BootRestart.always.restarts(status: 0))
        XCTAssertEqual(BootRestart(rawValue: "on-failure"), .onFailure)
    }
}
