import JailSystem
import XCTest

@testable import JailDaemon

#if canImport(Glibc)
import Glibc
#endif

/// init's stop as data (Init/StopSequence.swift): every step, its deadline and what it makes
/// init do, without a process, a signal or root. The stop timeout here is 10 s.
final class StopSequenceTests: XCTestCase {
    let timeout: Int64 = 10_000

    func sequence(withPayload: Bool = false) -> StopSequence {
        StopSequence(stopTimeoutMilliseconds: timeout, withPayload: withPayload)
    }

    /// No rc-stop, no payload: TERM to everything, the grace, KILL to all but the session
    /// helpers, their grace, then KILL to everything and the exit.
    func testTermThenGraceThenKill() {
        var stop = sequence()
        XCTAssertFalse(stop.isStopping)
        XCTAssertEqual(stop.handle(.stopAsked(payloadUp: false), now: 1000), [.stopServing, .startRCStop])
        XCTAssertTrue(stop.isStopping)
        XCTAssertEqual(stop.handle(.rcStopDidNotStart, now: 1000), [.terminateAll])
        XCTAssertEqual(stop.phase, .terminating(until: 11_000))
        XCTAssertEqual(stop.deadline, 11_000)

        XCTAssertEqual(stop.handle(.deadlinePassed, now: 10_999), [], "the grace is not over")
        XCTAssertEqual(stop.handle(.deadlinePassed, now: 11_000),
                       [.logWarning(.processesOutlivedTerm), .killPrograms])
        XCTAssertEqual(stop.phase, .killingPrograms(until: 11_000 + StopSequence.helperGrace))

        XCTAssertEqual(stop.handle(.deadlinePassed, now: 11_500), [], "the helpers' grace is not over")
        XCTAssertEqual(stop.handle(.deadlinePassed, now: 13_000), [.killEverything, .exitNow(0)])
        XCTAssertEqual(stop.exitStatus, 0)
        XCTAssertNil(stop.deadline, "nothing is waited for any more")
        XCTAssertEqual(stop.handle(.noChildrenLeft, now: 13_001), [], "over is over")
    }

    /// Everything ended within the grace: init exits at once, no KILL.
    func testNoChildLeftEndsTheGraceEarly() {
        var stop = sequence()
        _ = stop.handle(.stopAsked(payloadUp: false), now: 0)
        _ = stop.handle(.rcStopDidNotStart, now: 0)
        XCTAssertNil(stop.exitStatus)
        XCTAssertEqual(stop.handle(.noChildrenLeft, now: 300), [.exitNow(0)])
        XCTAssertEqual(stop.exitStatus, 0)
        XCTAssertEqual(stop.handle(.deadlinePassed, now: 20_000), [])
    }

    /// The payload's own poweroff: init's status says so (the supervisor exits 0 for it).
    func testThePayloadsPoweroffIsTheExitStatus() {
        var stop = sequence(withPayload: true)
        stop.exitCode = Init.payloadPoweredOff
        _ = stop.handle(.stopAsked(payloadUp: false), now: 0)
        XCTAssertEqual(stop.handle(.noChildrenLeft, now: 1), [.exitNow(Init.payloadPoweredOff)])
        XCTAssertEqual(stop.exitStatus, Init.payloadPoweredOff)
    }

    /// `--rc-stop` runs first; the TERM to everything waits for its end.
    func testRCStopRunsBeforeTheTerm() {
        var stop = sequence()
        XCTAssertEqual(stop.handle(.stopAsked(payloadUp: false), now: 0), [.stopServing, .startRCStop])
        XCTAssertEqual(stop.phase, .rcStop(until: timeout))
        XCTAssertEqual(stop.handle(.deadlinePassed, now: 5000), [], "rc-stop has its time")
        XCTAssertEqual(stop.handle(.noChildrenLeft, now: 5000), [.exitNow(0)],
                       "waitid sees rc-stop itself, so no child left means it is gone too")
    }

    func testTheTermFollowsRCStopsEnd() {
        var stop = sequence()
        _ = stop.handle(.stopAsked(payloadUp: false), now: 0)
        XCTAssertEqual(stop.handle(.rcStopEnded, now: 4000), [.terminateAll])
        XCTAssertEqual(stop.phase, .terminating(until: 4000 + timeout), "the grace runs from the TERM")
    }

    /// An rc-stop past the stop timeout is not killed alone: the TERM to everything reaches it.
    func testALateRCStopGetsTheTermWithEverything() {
        var stop = sequence()
        _ = stop.handle(.stopAsked(payloadUp: false), now: 0)
        XCTAssertEqual(stop.handle(.deadlinePassed, now: timeout), [.logWarning(.rcStopLate), .terminateAll])
        XCTAssertEqual(stop.handle(.rcStopEnded, now: timeout + 10), [], "its end after the TERM changes nothing")
        XCTAssertEqual(stop.phase, .terminating(until: 2 * timeout))
        XCTAssertEqual(StopSequence.Notice.rcStopLate.text(stopTimeoutSeconds: 10),
                       "rc-stop did not finish within 10s: stopping the jail anyway")
    }

    /// `--init`: rc-stop inside the payload while it is up, then the payload's halt, then TERM.
    func testWithAPayloadRCStopThenHaltThenTerm() {
        var stop = sequence(withPayload: true)
        XCTAssertEqual(stop.handle(.stopAsked(payloadUp: true), now: 0), [.stopServing, .startRCStop])
        XCTAssertEqual(stop.phase, .rcStopBeforeHalt(until: timeout))
        XCTAssertEqual(stop.handle(.rcStopEnded, now: 2000), [.haltPayload])
        XCTAssertEqual(stop.phase, .haltingPayload(until: 2000 + timeout))
        XCTAssertEqual(stop.handle(.payloadDown, now: 3000), [.terminateAll])
        XCTAssertEqual(stop.phase, .terminating(until: 3000 + timeout))
    }

    func testAPayloadThatDoesNotHaltIsKilled() {
        var stop = sequence(withPayload: true)
        _ = stop.handle(.stopAsked(payloadUp: true), now: 0)
        XCTAssertEqual(stop.handle(.deadlinePassed, now: timeout),
                       [.logWarning(.rcStopLateBeforeHalt), .killRCStop, .haltPayload])
        XCTAssertEqual(stop.handle(.rcStopEnded, now: timeout + 1), [], "killed: the halt goes on")
        XCTAssertEqual(stop.handle(.deadlinePassed, now: 2 * timeout), [.killPayload, .terminateAll])
        XCTAssertEqual(stop.handle(.payloadDown, now: 2 * timeout), [],
                       "the kill's own report of the payload's end does not start a second TERM")
    }

    func testWithAPayloadAndNoRCStopTheHaltComesFirst() {
        var stop = sequence(withPayload: true)
        _ = stop.handle(.stopAsked(payloadUp: true), now: 0)
        XCTAssertEqual(stop.handle(.rcStopDidNotStart, now: 0), [.haltPayload])
        XCTAssertEqual(stop.handle(.payloadHaltNotSent, now: 0), [.terminateAll], "a halt that cannot be asked is skipped")
    }

    /// A payload already down (ended, or its keeper gone): no rc-stop (it runs only inside a
    /// payload that is up), no halt: TERM at once.
    func testWithThePayloadDownTheTermComesAtOnce() {
        var stop = sequence(withPayload: true)
        XCTAssertEqual(stop.handle(.stopAsked(payloadUp: false), now: 0), [.stopServing, .terminateAll])
    }

    /// The payload ended on its own while rc-stop ran inside it (rc-stop powered it off).
    func testThePayloadsEndDuringRCStopGoesStraightToTheTerm() {
        var stop = sequence(withPayload: true)
        _ = stop.handle(.stopAsked(payloadUp: true), now: 0)
        XCTAssertEqual(stop.handle(.payloadDown, now: 100), [.terminateAll])
        XCTAssertEqual(stop.handle(.rcStopEnded, now: 200), [])
    }

    /// Only a stop starts the stop: a child's end, a deadline or a second stop change nothing.
    func testEventsOutsideTheStopAreIgnored() {
        var stop = sequence(withPayload: true)
        for event: StopSequence.Event in [.rcStopEnded, .payloadDown, .deadlinePassed, .noChildrenLeft,
                                          .rcStopDidNotStart, .payloadHaltNotSent] {
            XCTAssertEqual(stop.handle(event, now: 50_000), [], "\(event)")
            XCTAssertEqual(stop.phase, .serving)
        }
        _ = stop.handle(.stopAsked(payloadUp: false), now: 0)
        XCTAssertEqual(stop.handle(.stopAsked(payloadUp: true), now: 1), [], "a second SIGTERM")
        XCTAssertEqual(stop.phase, .terminating(until: timeout))
    }

    /// Boot services end with the stop's TERM or KILL: that is a stop, not a failure to restart.
    func testABootServiceEndedByTheStopIsNotAFailure() {
        XCTAssertTrue(Init.endedByTheStop(code: 128 + SIGTERM, stopping: true))
        XCTAssertTrue(Init.endedByTheStop(code: 128 + SIGKILL, stopping: true))
        XCTAssertFalse(Init.endedByTheStop(code: 1, stopping: true))
        XCTAssertFalse(Init.endedByTheStop(code: 128 + SIGTERM, stopping: false), "killed by someone else")
    }

    /// The spare at stop: dismissed (killed, its end is no session's), and it counts for no session.
    func testTheChildrenTable() {
        var children = InitChildren()
        children[10] = .spare
        children[11] = .sessionHelper(id: 1, operator: false)
        children[12] = .sessionHelper(id: 2, operator: true)
        children[13] = .bootService(index: 0)
        children[14] = .rcStop
        XCTAssertEqual(children.tenantSessions, 1)
        XCTAssertEqual(children.operatorSessions, 1)
        XCTAssertEqual(Set(children.helpers), [11, 12])
        XCTAssertEqual(children.pid(of: .rcStop), 14)
        XCTAssertNil(children.pid(of: .payloadKeeper))

        // The spare handed a connection becomes that session's helper.
        children[10] = .sessionHelper(id: 3, operator: false)
        XCTAssertEqual(children.tenantSessions, 2)
        // A spare dismissed at stop: no session, no helper, its end means nothing.
        children[10] = .dismissed
        XCTAssertEqual(children.tenantSessions, 1)
        XCTAssertFalse(children.isHelper(10))
        XCTAssertEqual(children.remove(10), .dismissed)
        XCTAssertNil(children.remove(10), "reaped once")
        XCTAssertNil(children.remove(99), "an orphan of the jail is no child of the table")
    }
}

/// The face calls the stop and the spare's hand-off use (JailSystem/NamespaceInit.swift,
/// WaitingByte.swift), on socketpairs and pipes of the test's own.
final class InitFaceTests: XCTestCase {
    func testAWaitingByteIsReadWithoutWaiting() throws {
        let (mine, theirs) = try UnixSocket.pair()
        defer { mine.closeQuietly() }
        XCTAssertEqual(mine.receiveWaitingByte(), .nothing, "nothing sent: no wait, no end")
        try theirs.writeFully([SpareHandOff.acknowledgement])
        XCTAssertEqual(mine.receiveWaitingByte(), .byte(SpareHandOff.acknowledgement))
        XCTAssertEqual(mine.receiveWaitingByte(), .nothing)
        theirs.closeQuietly()
        XCTAssertEqual(mine.receiveWaitingByte(), .ended)
    }

    /// The lifeline's check: a word waiting to be read is not the supervisor's end.
    func testHangUpIsNotData() throws {
        let pipe = try Pipe.make()
        defer { pipe.read.closeQuietly() }
        XCTAssertFalse(pipe.read.isHungUp())
        try pipe.write.writeFully([LifelineWord.go.rawValue])
        XCTAssertFalse(pipe.read.isHungUp(), "a byte to read")
        XCTAssertTrue(try pipe.read.isReadable())
        pipe.write.closeQuietly()
        XCTAssertTrue(pipe.read.isHungUp())
    }

    func testThePipeCapacityGrows() throws {
        let pipe = try Pipe.make()
        defer { pipe.close() }
        try pipe.write.setPipeCapacity(1 << 17)
        XCTAssertEqual(fcntl(pipe.write.rawValue, 1032 /* F_GETPIPE_SZ */), 1 << 17)
    }
}
