@testable import JailDaemon
import JailSystem
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class MetricsTests: XCTestCase {
    func testFullJailRendersEveryFamilyWithHelpAndType() {
        let jail = Metrics.Figures(name: "web", uid: 62600, started: 1_700_000_000, cpuSeconds: 1.5, memoryBytes: 1024,
                                   memoryLimitBytes: 67_108_864, memoryMaxBytes: 2048, oomKills: 1, pids: 3, pidsLimit: 64,
                                   sessions: 2, diskBytes: 10, diskLimitBytes: 100, rcExitStatus: 0, bootRestarts: 2,
                                   network: .init(receiveBytes: 11, transmitBytes: 12, receivePackets: 13, transmitPackets: 14))
        let text = Metrics.render([jail])
        for family in Metrics.families {
            XCTAssertTrue(text.contains("# HELP \(family.name) "), family.name)
            XCTAssertTrue(text.contains("# TYPE \(family.name) \(family.type)\n"), family.name)
        }
        XCTAssertTrue(text.contains("jail_up{jail=\"web\",uid=\"62600\"} 1\n"))
        XCTAssertTrue(text.contains("jail_cpu_seconds_total{jail=\"web\",uid=\"62600\"} 1.5\n"))
        XCTAssertTrue(text.contains("jail_memory_limit_bytes{jail=\"web\",uid=\"62600\"} 67108864\n"))
        XCTAssertTrue(text.contains("jail_rc_exit_status{jail=\"web\",uid=\"62600\"} 0\n"))
        XCTAssertTrue(text.contains("jail_network_transmit_bytes_total{jail=\"web\",uid=\"62600\"} 12\n"))
        XCTAssertTrue(text.contains("jail_network_receive_packets_total{jail=\"web\",uid=\"62600\"} 13\n"))
        XCTAssertTrue(text.hasSuffix("\n"))
    }

    /// A jail without a controller has no series for it (not 0), and a family no jail has is
    /// left out whole (no HELP without samples).
    func testMissingFiguresAreOmittedNotZero() {
        let bare = Metrics.Figures(name: "bare", uid: 1, started: 5)
        let limited = Metrics.Figures(name: "limited", uid: 2, started: 6, memoryBytes: 7)
        let text = Metrics.render([bare, limited])
        XCTAssertTrue(text.contains("jail_memory_bytes{jail=\"limited\",uid=\"2\"} 7\n"))
        XCTAssertFalse(text.contains("jail_memory_bytes{jail=\"bare\""))
        XCTAssertFalse(text.contains("jail_pids"))
        XCTAssertFalse(text.contains("jail_rc_exit_status"))
        XCTAssertEqual(text.components(separatedBy: "# TYPE jail_memory_bytes").count, 2)
    }

    func testLabelValuesAreEscapedAndPrintable() {
        XCTAssertEqual(Metrics.escapeLabel("a\\b\"c\nd"), "a\\\\b\\\"c\\nd")
        XCTAssertEqual(Metrics.escapeHelp("say \"x\"\\"), "say \"x\"\\\\")
        let text = Metrics.render([Metrics.Figures(name: "a\"b\u{1b}[2J\u{202e}", uid: 3, started: 0)])
        // The quote escaped, the escape and bidi characters shown as text: one line per series.
        XCTAssertTrue(text.contains("jail_up{jail=\"a\\\"b\\\\x1b[2J\\\\u{202e}\",uid=\"3\"} 1\n"), text)
        XCTAssertFalse(text.unicodeScalars.contains { Logfmt.isUnsafe($0) && $0 != "\n" })
    }

    func testEmptyHostRendersNothing() {
        XCTAssertEqual(Metrics.render([]), "")
    }

    /// The reading side on a fake v1 tree: usage from the jail's directory (the kernel sums the
    /// leaves), limits from `programs`, v1 OOM kills summed over the leaves, "max" as none.
    func testReadsV1AndV2FilesFromTheStateCgroups() throws {
        let root = "/tmp/jail-metrics-test-\(getpid())"
        defer { _ = try? removeTree(root) }
        let v2 = root + "/unified/jail/x", memory = root + "/memory/jail/x", pids = root + "/pids/jail/x"
        for directory in [v2, memory, pids] {
            for leaf in JailCgroups.leaves { XCTAssertEqual(makeFixtureDirectories(directory + "/" + leaf), 0) }
        }
        try writeFixture(v2 + "/cpu.stat", "usage_usec 2500000\nuser_usec 1\nsystem_usec 2\n")
        try writeFixture(memory + "/memory.usage_in_bytes", "4096\n")
        try writeFixture(memory + "/programs/memory.limit_in_bytes", "67108864\n")
        try writeFixture(memory + "/memory.max_usage_in_bytes", "8192\n")
        try writeFixture(memory + "/programs/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
        try writeFixture(memory + "/sessions/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
        try writeFixture(pids + "/pids.current", "5\n")
        try writeFixture(pids + "/programs/pids.max", "max\n")
        var state = JailState(socket: "s", pidFile: "p", uid: 9, gid: 9, root: root + "/nonexistent/root", supervisor: 1,
                              initPid: 0, started: 42, cgroup: "", rcStatus: 3, name: "x")
        state.cgroups = [v2, memory, pids]
        let figures = Metrics.read(state, sessions: 1)
        XCTAssertEqual(figures, Metrics.Figures(name: "x", uid: 9, started: 42, cpuSeconds: 2.5, memoryBytes: 4096,
                                                memoryLimitBytes: 67_108_864, memoryMaxBytes: 8192, oomKills: 3, pids: 5,
                                                pidsLimit: nil, sessions: 1, rcExitStatus: 3))
    }

    func testOutputIsReplacedAtomically() throws {
        let directory = "/tmp/jail-metrics-out-\(getpid())"
        XCTAssertEqual(makeFixtureDirectories(directory), 0)
        defer { _ = try? removeTree(directory) }
        let path = directory + "/jail.prom"
        try writeFixture(path, "old\n")
        try Metrics.replaceAtomically(path, with: Array("new\n".utf8))
        XCTAssertEqual(try readText(path), "new\n")
        XCTAssertEqual(listDirectory(directory), ["jail.prom"])
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o644)
    }

    private func removeTree(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in listDirectory(path) { try removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    func testDecimalFieldsReadProcFilesOnBytes() {
        XCTAssertEqual(decimalFields(Array("4196 1327 871 1234 0 356 0\n".utf8)), [4196, 1327, 871, 1234, 0, 356, 0])
        XCTAssertEqual(decimalFields(Array("12 345 ".utf8)), [12, 345])
        XCTAssertEqual(decimalFields([]), [])
    }
}
