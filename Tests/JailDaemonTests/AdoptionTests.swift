import XCTest

@testable import JailDaemon

final class AdoptionTests: XCTestCase {
    func testRequestAndReplyRoundTrip() {
        XCTAssertEqual(AdoptionAndEntryChannel.requestedVersion(AdoptionAndEntryChannel.request), AdoptionAndEntryChannel.version)
        XCTAssertEqual(AdoptionAndEntryChannel.requestedVersion(Array("jail-adopt 7\n".utf8)), 7)
        XCTAssertNil(AdoptionAndEntryChannel.requestedVersion(Array("hello 1\n".utf8)))
        let reply = AdoptionAndEntryChannel.parseReply(AdoptionAndEntryChannel.reply(start: 123, pidNamespace: "pid:[4026532180]", dropped: 5,
                                                                     orphanedSeconds: 9))
        XCTAssertEqual(reply, AdoptionAndEntryChannel.Reply(version: 1, refused: nil,
                                                    fields: ["start": "123", "pidns": "pid:[4026532180]", "dropped": "5",
                                                             "orphaned": "9"]))
        XCTAssertEqual(AdoptionAndEntryChannel.parseReply(AdoptionAndEntryChannel.refusal("the jail's supervisor is alive"))?.refused,
                       "the jail's supervisor is alive")
        XCTAssertEqual(AdoptionAndEntryChannel.parseReply(Array("jail-init 2 start=1\n".utf8))?.version, 2)
        XCTAssertNil(AdoptionAndEntryChannel.parseReply(Array("jail-initx 1\n".utf8)))
    }

    func testControlSocketSitsBesideTheJailSocket() {
        XCTAssertEqual(AdoptionAndEntryChannel.controlPath(socketPath: "/run/jail/jaild-1-1.sock"), "/run/jail/jaild-1-1.ctl")
    }

    func testStartTimeIsCountedFromTheLastParenthesis() {
        let stat = Array("42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 86140 1000 10 18446744073709551615\n".utf8)
        XCTAssertEqual(ProcessIdentity.startTime(stat: stat), 86140)
        XCTAssertNil(ProcessIdentity.startTime(stat: Array("42 (x) S 1".utf8)))
    }

    func testOwnIdentityIsReadable() {
        let me = ProcessIdentity.of("self")
        XCTAssertNotNil(me)
        XCTAssertTrue(me?.pidNamespace.hasPrefix("pid:[") ?? false)
        XCTAssertEqual(me, ProcessIdentity.of("\(getpid())"))
    }

    func testStateWithIdentityRoundTripsAndOldStateHasNone() {
        var state = JailState(socket: "/run/jail/jaild-1-1.sock", pidFile: "/run/jail/jaild-1-1.pid", uid: 1, gid: 1,
                              root: "/srv/a", supervisor: 10, initPid: 11, started: 1_700_000_000, cgroup: "/sys/fs/cgroup/jail/j",
                              ports: "tcp:25")
        state.identity = ProcessIdentity(startTime: 86140, pidNamespace: "pid:[1]", mountNamespace: "mnt:[2]")
        state.control = "/run/jail/jaild-1-1.ctl"
        state.cgroups = ["/sys/fs/cgroup/jail/j", "/sys/fs/cgroup/memory/jail/j"]
        XCTAssertEqual(JailState.decode(state.encoded()), state)
        let old = JailState.decode("socket=/s\npidfile=/p\nuid=1\ngid=1\nsupervisor=2\ninit=3\nstarted=4\n")
        XCTAssertEqual(old?.version, 1)
        XCTAssertNil(old?.identity)
        XCTAssertEqual(old?.cgroups, [])
    }
}
