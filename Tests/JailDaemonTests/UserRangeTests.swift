@testable import JailDaemon
import Foundation
import JailSystem
import XCTest

final class UserRangeTests: XCTestCase {
    func testMapKeepsTheUserAndPutsEveryOtherIdInTheRangeButTheOwner() {
        XCTAssertEqual(UserRange.mapLines(keeping: 61000, start: 1_048_576),
                       "0 1048576 61000\n61000 61000 1\n61001 1109577 4534\n")
        // gid 0: no empty first line.
        XCTAssertEqual(UserRange.mapLines(keeping: 0, start: 1_048_576), "0 0 1\n1 1048577 65534\n")
        XCTAssertEqual(UserRange.mapLines(keeping: 65534, start: 1_048_576), "0 1048576 65534\n65534 65534 1\n")
        // Above 65534: all of 0–65534 in the range, the user beside it.
        XCTAssertEqual(UserRange.mapLines(keeping: 100_000, start: 1_048_576), "0 1048576 65535\n100000 100000 1\n")
        // The owner, the range's last id, is in no map.
        let owner = UserRange.namespaceOwner(start: 1_048_576)
        XCTAssertEqual(owner, 1_048_576 + 65535)
        for id: UInt32 in [0, 61000, 65534, 100_000] {
            for line in UserRange.mapLines(keeping: id, start: 1_048_576).split(separator: "\n") {
                let f = line.split(separator: " ").compactMap { UInt32($0) }
                XCTAssertFalse((f[1]..<(f[1] + f[2])).contains(owner), String(line))
            }
        }
    }

    func testHostIdsInUseComeFromAccountsAndSubordinateRanges() {
        let used = UserRange.hostIDsInUse(passwd: "root:x:0:0::/root:/bin/sh\nbig:x:1200000:1200000::/:/bin/sh\n",
                                          group: "wheel:x:10:\n", subuid: "alice:100000:65536\n",
                                          subgid: "bob:2000000:10\nbroken line\n", ids: [61000])
        XCTAssertEqual(Set(used), [61000...61000, 0...0, 1_200_000...1_200_000, 10...10, 100_000...165_535,
                                   2_000_000...2_000_009])
    }

    func testChoiceSkipsTakenSlotsAndSlotsWithHostIds() {
        let pool = UserRangePool(start: 1 << 20, count: 4 << 16)
        XCTAssertEqual(pool.slots, [1_048_576, 1_114_112, 1_179_648, 1_245_184])
        XCTAssertEqual(UserRange.choose(pool: pool, inUse: [], taken: []), 1_048_576)
        // The first slot belongs to a jail, the second holds a host account's uid.
        XCTAssertEqual(UserRange.choose(pool: pool, inUse: [1_120_000...1_120_000], taken: [1_048_576]), 1_179_648)
        // A subuid range over the last two: nothing left.
        XCTAssertNil(UserRange.choose(pool: pool, inUse: [1_179_000...1_300_000, 1_114_112...1_114_112],
                                      taken: [1_048_576]))
    }

    func testReservationLinesAreAddedAndOnlyTheirOwnRemoved() {
        let line = UserRange.reservation(start: 1 << 30)
        XCTAssertEqual(line, "root:1073741824:65536")
        XCTAssertEqual(UserRange.adding(line, to: ""), "root:1073741824:65536\n")
        XCTAssertEqual(UserRange.adding(line, to: "alice:100000:65536"), "alice:100000:65536\nroot:1073741824:65536\n")
        let text = "alice:100000:65536\nroot:1073741824:65536\nroot:1073741824:131072\nbob:165536:65536\n"
        XCTAssertTrue(UserRange.holds(text, line: line))
        XCTAssertEqual(UserRange.removing(line, from: text), "alice:100000:65536\nroot:1073741824:131072\nbob:165536:65536\n")
        XCTAssertEqual(UserRange.removing(line, from: "root:1073741824:65536\n"), "")
        XCTAssertFalse(UserRange.holds("root:1073741824:131072\n", line: line))
    }

    func testReservationIsAppendedToTheFileAsItWasRead() throws {
        let directory = "/tmp/jail-subuid-append-\(getpid())"
        XCTAssertEqual(mkdir(directory, 0o700), 0)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = UserRangeStore(directory: directory + "/userns")
        let path = directory + "/subuid"
        let line = UserRange.reservation(start: 1_048_576)
        func text() -> String { String(decoding: (try? readFile(path)) ?? [], as: UTF8.self) }

        // No final newline: one goes first; the mode and inode stay (appended, not replaced).
        try writeFile(path, text: "alice:100000:65536", mode: 0o640)
        let before = try XCTUnwrap(try fileStatus(path))
        try store.appendShadowLine(path, line, to: text())
        XCTAssertEqual(text(), "alice:100000:65536\n\(line)\n")
        let after = try XCTUnwrap(try fileStatus(path))
        XCTAssertEqual(after.st_ino, before.st_ino)
        XCTAssertEqual(after.st_mode & 0o7777, 0o640)

        // Changed since it was read (written without the locks): rewritten from what is there now.
        try store.appendShadowLine(path, UserRange.reservation(start: 1_114_112), to: "stale\n")
        XCTAssertEqual(text(), "alice:100000:65536\n\(line)\nroot:1114112:65536\n")

        // Missing: made, with the line alone.
        let missing = directory + "/subgid"
        try store.appendShadowLine(missing, line, to: "")
        XCTAssertEqual(String(decoding: try readFile(missing), as: UTF8.self), "\(line)\n")
    }

    func testConflictsNameTheEntry() {
        let start: UInt32 = 1 << 30
        let own = UserRange.reservation(start: start) + "\n"
        XCTAssertNil(UserRange.conflict(start: start, passwd: "root:x:0:0::/:/bin/sh\n", group: "", subuid: own,
                                        subgid: own, ids: [61000]))
        XCTAssertEqual(UserRange.conflict(start: start, passwd: "", group: "", subuid: own + "eve:1073741824:65536\n",
                                          subgid: own, ids: []), "/etc/subuid has 'eve:1073741824:65536'")
        // A root range over it (LXD's, say) is not the jail's own line: a conflict too.
        XCTAssertEqual(UserRange.conflict(start: start, passwd: "", group: "", subuid: own,
                                          subgid: "root:1000000:1000000000\n", ids: []),
                       nil)
        XCTAssertEqual(UserRange.conflict(start: start, passwd: "", group: "", subuid: own,
                                          subgid: "root:1000000:2000000000\n", ids: []),
                       "/etc/subgid has 'root:1000000:2000000000'")
        XCTAssertEqual(UserRange.conflict(start: start, passwd: "mallory:x:1073807359:100::/:/bin/sh\n", group: "",
                                          subuid: own, subgid: own, ids: []),
                       "/etc/passwd gives id 1073807359 to mallory")
        XCTAssertEqual(UserRange.conflict(start: start, passwd: "", group: "", subuid: "", subgid: "", ids: [start + 5]),
                       "the jail user's own id 1073741829")
    }

    func testPoolsInsideUseraddsSpanAreRefused() {
        let defaults = SubordinateSpan.parse(loginDefs: "# nothing\nUID_MIN 1000\n")
        XCTAssertEqual(defaults, SubordinateSpan(uids: 100_000...600_100_000, gids: 100_000...600_100_000))
        XCTAssertNil(defaults.refusal(of: .standard))
        XCTAssertNotNil(defaults.refusal(of: UserRangePool(start: 1 << 20, count: 1 << 28)))
        let debian = SubordinateSpan.parse(loginDefs: "SUB_UID_MIN\t\t   100000\nSUB_UID_MAX\t\t600100000\n"
            + "SUB_GID_MIN 100000\nSUB_GID_MAX 2000000000\n#SUB_UID_MAX 5\n")
        XCTAssertEqual(debian.uids, 100_000...600_100_000)
        XCTAssertEqual(debian.refusal(of: .standard),
                       "the user-namespace pool 1073741824:1073610752 overlaps the subordinate ids useradd hands out "
                           + "(SUB_GID_MIN-SUB_GID_MAX in /etc/login.defs: 100000-2000000000): choose a --userns-pool "
                           + "outside them (the default is 1073741824:1073610752)")
        // The default pool: above the span, below systemd's foreign range and 2^31, and 10,000 jails fit.
        let pool = UserRangePool.standard
        XCTAssertGreaterThan(UInt64(pool.start), SubordinateSpan.defaultMax)
        XCTAssertLessThanOrEqual(UInt64(pool.start) + UInt64(pool.count), 0x7FFE_0000)
        XCTAssertGreaterThanOrEqual(pool.slots.count, 10_000)
    }

    func testPoolParsing() throws {
        XCTAssertEqual(try UserRangePool.parse("2097152:131072"), UserRangePool(start: 2_097_152, count: 131_072))
        XCTAssertThrowsError(try UserRangePool.parse("2097152"))
        XCTAssertThrowsError(try UserRangePool.parse("2097152:1000"))
        XCTAssertThrowsError(try UserRangePool.parse("4294901760:131072"))
        XCTAssertThrowsError(try UserRangePool.parse("0:65536"))
    }

    func testLimitsAreWrittenInsideBeforeProcSysTurnsReadOnly() {
        var configuration = JailConfiguration(uid: 61000)
        configuration.root = "/srv/jail"
        XCTAssertFalse(MountPlan(configuration: configuration).steps.contains { if case .limitUserNamespace = $0 { true } else { false } })
        let limits = [UserNamespaceLimit(name: "max_inotify_instances", value: 128)]
        configuration.userNamespaceLimits = limits
        let steps = MountPlan(configuration: configuration).steps
        let limit = steps.firstIndex(of: .limitUserNamespace("/proc/sys/user", limits))
        let readOnly = steps.firstIndex(of: .readOnly("/proc/sys"))
        let becomeRoot = steps.firstIndex(of: .becomeNamespaceRoot)
        XCTAssertNotNil(limit)
        XCTAssertNotNil(readOnly)
        XCTAssertLessThan(becomeRoot ?? .max, limit ?? 0)
        XCTAssertLessThan(limit ?? .max, readOnly ?? 0)
    }

    func testHostLimitsAreEveryMaxOfTheDirectory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "128\n".write(toFile: directory + "/max_inotify_instances", atomically: true, encoding: .utf8)
        try "96555\n".write(toFile: directory + "/max_user_namespaces", atomically: true, encoding: .utf8)
        try "x\n".write(toFile: directory + "/other", atomically: true, encoding: .utf8)
        XCTAssertEqual(try UserNamespaceLimit.host(directory: directory),
                       [UserNamespaceLimit(name: "max_inotify_instances", value: 128),
                        UserNamespaceLimit(name: "max_user_namespaces", value: 96555)])
        // One that cannot be read is the start's error, not a limit left at 2^31-1.
        try FileManager.default.createDirectory(atPath: directory + "/max_unreadable", withIntermediateDirectories: false)
        XCTAssertThrowsError(try UserNamespaceLimit.host(directory: directory)) {
            XCTAssertEqual(($0 as? SystemError)?.path, directory + "/max_unreadable")
        }
    }

    func testShadowStyleLockIsTakenRemovedWhenStaleAndRefusedWhenHeld() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("shadowlock-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/subuid"
        let soon = monotonicMilliseconds() + 200
        XCTAssertNoThrow(try ShadowLock.lockFile(file, deadline: soon))
        XCTAssertEqual(ShadowLock.lockHolder(file + ".lock"), getpid())
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(file).\(getpid())"))
        // Held by a live process (this one): refused at the deadline, naming it.
        XCTAssertThrowsError(try ShadowLock.lockFile(file, deadline: monotonicMilliseconds() + 100)) { error in
            XCTAssertTrue("\(error)".contains("is held by process \(getpid())"), "\(error)")
        }
        // A holder that is gone (shadow writes the pid NUL-terminated): stale, taken over.
        try "2147483646\u{0}".write(toFile: file + ".lock", atomically: false, encoding: .utf8)
        XCTAssertNoThrow(try ShadowLock.lockFile(file, deadline: monotonicMilliseconds() + 200))
        XCTAssertEqual(ShadowLock.lockHolder(file + ".lock"), getpid())
    }

    func testRecordsAreScannedOnBytes() {
        var seen: [String] = []
        UserRange.scanRecords("root:x:0:0::/root:/bin/sh\nbad:x::1\n  eve:1073741824:65536\r\nbig:99999999999999999999:1\nshort") {
            line, second, third in
            seen.append("\(String(Substring(line)))|\(second.map(String.init) ?? "-")|\(third.map(String.init) ?? "-")")
            return false
        }
        XCTAssertEqual(seen, ["root:x:0:0::/root:/bin/sh|-|0", "bad:x::1|-|-", "  eve:1073741824:65536\r|1073741824|65536",
                              "big:99999999999999999999:1|-|1", "short|-|-"])
        let start: UInt32 = 1_073_741_824
        XCTAssertEqual(UserRange.conflict(start: start, passwd: "", group: "", subuid: " eve:1073741824:65536\r\n", subgid: "",
                                          ids: []), "/etc/subuid has 'eve:1073741824:65536'")
    }

    func testRemovalKeepsEveryOtherByte() {
        let line = UserRange.reservation(start: 1 << 30)
        XCTAssertEqual(UserRange.removing(line, from: "a:1:2\r\n  \(line)\t\n\nb:3:4"), "a:1:2\r\n\nb:3:4")
        XCTAssertEqual(UserRange.removing(line, from: "\(line)\n\(line)\nc:5:6\n"), "c:5:6\n")
        XCTAssertEqual(UserRange.removing(line, from: ""), "")
        XCTAssertEqual(UserRange.removing(line, from: "\n\n"), "\n\n")
        XCTAssertTrue(UserRange.holds(" \(line)\r\n", line: line))
    }

    /// A range file that cannot be read is an error, never a free slot: taken for absent, the
    /// jail would be given a second range and its files would not be its own any more.
    func testAnUnreadableRangeFileIsAnErrorNotAFreeSlot() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jail-ranges-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = UserRangeStore(directory: directory)
        XCTAssertNil(try store.holder(of: 1_048_576), "no file: no holder")
        try "jail-1-1 /run/jail/s\n".write(toFile: directory + "/1048576.range", atomically: false, encoding: .utf8)
        XCTAssertEqual(try store.holder(of: 1_048_576)?.name, "jail-1-1")
        try FileManager.default.createDirectory(atPath: directory + "/1114112.range", withIntermediateDirectories: false)
        XCTAssertThrowsError(try store.holder(of: 1_114_112)) { error in
            XCTAssertTrue("\(error)".contains("1114112.range"), "\(error)")
        }
        XCTAssertThrowsError(try store.allocations(), "every slot is read: the unreadable one stops the walk")
    }
}

/// The stamp that lets a restart skip reading /etc/passwd, /etc/group, /etc/subuid and
/// /etc/subgid: written only after a full check passed, and any change to one of the files
/// (in place, same size; or replaced) brings the full check back.
final class UserRangeStampTests: ScratchDirectoryTestCase {
    let start: UInt32 = 1 << 30
    let ids: [UInt32] = [61000, 61000]
    var paths = HostIDFiles.Paths()

    override func setUpWithError() throws {
        try super.setUpWithError()
        paths = HostIDFiles.Paths(passwd: directory + "/passwd", group: directory + "/group",
                                  subuid: directory + "/subuid", subgid: directory + "/subgid")
        let own = UserRange.reservation(start: start) + "\n"
        try writeFile(paths.passwd, text: "root:x:0:0::/:/bin/sh\neve:x:0000000001:100::/:/bin/sh\n", mode: 0o644)
        try writeFile(paths.group, text: "root:x:0:\n", mode: 0o644)
        try writeFile(paths.subuid, text: own, mode: 0o644)
        try writeFile(paths.subgid, text: own, mode: 0o644)
        XCTAssertEqual(mkdir(directory + "/userns", 0o700), 0)
    }

    /// A store whose clock is `ahead` seconds past now: the files look settled (or, at 0, not).
    func store(ahead: Int = 10) -> UserRangeStore {
        UserRangeStore(directory: directory + "/userns", accounts: paths) {
            var now = AccountsStamp.realtimeNow()
            now.tv_sec += ahead
            return now
        }
    }

    var stamp: AccountsStamp { AccountsStamp(start: start, ids: ids, path: "\(directory)/userns/\(start).checked") }

    func testAPassedCheckIsStampedAndAnyChangeBringsTheFullCheckBack() throws {
        try store().recheck(start, ids: ids)
        XCTAssertTrue(stamp.matches(paths), "stamped after the full check passed")
        XCTAssertFalse(AccountsStamp(start: start, ids: [61001, 61000], path: stamp.path).matches(paths), "other ids")
        XCTAssertFalse(AccountsStamp(start: start + 65536, ids: ids, path: stamp.path).matches(paths), "another range")

        // In place, the same size, the same inode: an id in the range. The ctime moved (past
        // the kernel's coarse clock tick), so the stamp does not match and the check refuses.
        usleep(50_000)
        let fd = try openFile(paths.passwd, O_WRONLY)
        let changed = Array("eve:x:1073741829:100::/:/bin/sh\n".utf8)
        XCTAssertEqual(changed.withUnsafeBytes { pwrite(fd.rawValue, $0.baseAddress, $0.count, 22) }, changed.count)
        closeDescriptor(fd.rawValue)
        XCTAssertFalse(stamp.matches(paths))
        XCTAssertThrowsError(try store().recheck(start, ids: ids)) { error in
            XCTAssertTrue("\(error)".contains("gives id 1073741829 to eve"), "\(error)")
        }

        // Replaced by rename (as the shadow tools write): a new inode.
        try writeFile(paths.passwd, text: "root:x:0:0::/:/bin/sh\n", mode: 0o644, .atomic)
        try store().recheck(start, ids: ids)
        XCTAssertTrue(stamp.matches(paths))
        try writeFile(paths.subgid, text: "root:1000000:2000000000\n", mode: 0o644, .atomic)
        XCTAssertFalse(stamp.matches(paths))
        XCTAssertThrowsError(try store().recheck(start, ids: ids)) { error in
            XCTAssertTrue("\(error)".contains("/etc/subgid has 'root:1000000:2000000000'"), "\(error)")
        }
    }

    func testFilesChangedInTheLastSecondAreNotStamped() throws {
        try store(ahead: 0).recheck(start, ids: ids)
        XCTAssertNil(try fileStatus(stamp.path), "a file still changing could change again within the same tick")
        try store().recheck(start, ids: ids)
        XCTAssertTrue(stamp.matches(paths))
    }

    func testAStampThatIsNotExactlyTheFilesIsAFullCheck() throws {
        try store().recheck(start, ids: ids)
        let text = String(decoding: try readFile(stamp.path), as: UTF8.self)
        try writeFile(stamp.path, text: String(text.dropLast(2)), mode: 0o600)
        XCTAssertFalse(stamp.matches(paths))
        // A file that goes away: "absent" is part of the stamp.
        try store().recheck(start, ids: ids)
        XCTAssertTrue(stamp.matches(paths))
        XCTAssertTrue(try removeFile(paths.group))
        XCTAssertFalse(stamp.matches(paths))
    }

    /// The byte scan gives what the line-by-line parse gave.
    func testHostIdsInUseOnBytes() {
        let files = HostIDFiles(passwd: "a:x:5:5\n\nb:x:notanumber:1\nc:x:7", group: "g:x:9:\r\n",
                                subuid: "r:100:10\nbad:1:0\nhuge:18446744073709551615:2\n", subgid: "")
        XCTAssertEqual(UserRange.hostIDsInUse(files, ids: [3]),
                       [3...3, 5...5, 7...7, 9...9, 100...109, 18_446_744_073_709_551_615...UInt64.max])
    }
}
