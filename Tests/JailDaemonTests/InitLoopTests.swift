import CJail
import JailProtocol
import JailSystem
import XCTest

@testable import JailDaemon

#if canImport(Glibc)
import Glibc
#endif

/// Issue 27, items 10-13: what init obeys, what proves host root, what the helpers' cgroup gets.
final class InitLoopTests: XCTestCase {
    func testOnlyAKillFromOutsideStopsTheJail() {
        XCTAssertTrue(ReceivedSignal(signal: SIGTERM, sender: 0, code: 0).killedFromOutside, "kill(2), pidfd_send_signal(2)")
        XCTAssertTrue(ReceivedSignal(signal: SIGTERM, sender: 0, code: -6).killedFromOutside, "tgkill(2)")
        XCTAssertFalse(ReceivedSignal(signal: SIGTERM, sender: 42, code: 0).killedFromOutside, "a kill from inside")
        XCTAssertFalse(ReceivedSignal(signal: SIGTERM, sender: 0, code: 1).killedFromOutside, "F_SETSIG: POLL_IN")
        XCTAssertFalse(ReceivedSignal(signal: SIGTERM, sender: 0, code: 0x80).killedFromOutside, "SI_KERNEL")
        XCTAssertFalse(ReceivedSignal(signal: SIGTERM, sender: 0, code: -1).killedFromOutside, "sigqueue: its pid is the sender's to write")
        XCTAssertTrue(Init.describe(ReceivedSignal(signal: SIGTERM, sender: 0, code: 1)).contains("si_code 1, not by kill(2)"))
        XCTAssertTrue(Init.describe(ReceivedSignal(signal: SIGTERM, sender: 7, code: 0)).contains("by pid 7 inside the jail"))
    }

    func testOperatorRefusalsCarryTheirReason() {
        XCTAssertEqual(OperatorEntry.refusalReason(OperatorEntry.refusal("4 operator sessions are running")),
                       "4 operator sessions are running")
        XCTAssertEqual(OperatorEntry.refusalReason(AdoptionAndEntryChannel.refusal("no proof")), "no proof", "one format for both")
        XCTAssertNil(OperatorEntry.refusalReason(OperatorEntry.accepted))
        XCTAssertNil(OperatorEntry.refusalReason(Array("jail-init 1 refused ".utf8)))
    }

    /// Only the recorded directory, opened for reading, proves anything: not an O_PATH
    /// descriptor of it (no permission needed), not another directory, not a file.
    func testTheProofIsTheRecordedDirectoryOpenForReading() throws {
        let base = "/tmp/jail-proof-test-\(getpid())"
        let proofPath = base + "/proof"
        let otherPath = base + "/other"
        XCTAssertEqual(mkdir(base, 0o700), 0)
        defer {
            rmdir(proofPath)
            rmdir(otherPath)
            unlink(base + "/file")
            rmdir(base)
        }
        XCTAssertEqual(mkdir(proofPath, 0o700), 0)
        XCTAssertEqual(mkdir(otherPath, 0o700), 0)
        let proof = try OperatorProof.record(proofPath)

        // As a peer opens it (OperatorProof.open, which also wants the directory root's).
        let good = open(proofPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        defer { close(good) }
        XCTAssertTrue(proof.isProvenBy(good))

        let pathOnly = open(proofPath, CJ_O_PATH | O_DIRECTORY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(pathOnly, 0)
        defer { close(pathOnly) }
        XCTAssertFalse(proof.isProvenBy(pathOnly), "O_PATH takes no permission on the directory")

        let other = open(otherPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(other) }
        XCTAssertFalse(proof.isProvenBy(other))

        let file = open(base + "/file", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(file) }
        XCTAssertFalse(proof.isProvenBy(file))
        XCTAssertFalse(proof.isProvenBy(-1))

        // A directory open to others proves nothing: refused when recorded.
        XCTAssertEqual(chmod(otherPath, 0o755), 0)
        XCTAssertThrowsError(try OperatorProof.record(otherPath))
        XCTAssertThrowsError(try OperatorProof.record(base + "/missing"))
    }

    func testTheHelpersGetTheJailsCPUsAndAQuarterOfItsMemory() {
        XCTAssertNil(CgroupLimits(pids: 64).sessionLimits)
        XCTAssertEqual(CgroupLimits(cpus: 0.1).sessionLimits, CgroupLimits(cpus: 0.1))
        XCTAssertEqual(CgroupLimits(memory: 256 << 20, pids: 64, cpus: 2).sessionLimits, CgroupLimits(memory: 64 << 20, cpus: 2))
        let files = CgroupLimits(cpus: 0.1).sessionLimits!.files(unified: false, controllers: ["cpu"]).map { "\($0.file)=\($0.value)" }
        XCTAssertEqual(files, ["cpu.cfs_period_us=100000", "cpu.cfs_quota_us=10000"])
    }

    func testTheSparesAcknowledgementIsNotAHandOff() {
        XCTAssertNil(SpareHandOff(bytes: [SpareHandOff.acknowledgement]))
    }
}
