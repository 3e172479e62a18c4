@testable import JailDaemon
import Foundation
import JailSystem
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// What `jaild list` and `jaild metrics` were made faster with (issue 36): the threads, the
/// decoder on bytes, the renderers' fast paths, the cgroup files skipped. Each must answer
/// exactly what the slower code did.
final class ListFastTests: XCTestCase {
    // MARK: Parallel

    func testParallelMapKeepsOrderAndComputesEachIndexOnce() {
        for threads in [1, 2, 3, 8] {
            for count in [0, 1, 31, 32, 64, 100, 2005] {
                let calls = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                calls.initialize(repeating: 0, count: max(count, 1))
                defer { calls.deallocate() }
                let address = Int(bitPattern: calls)
                let result = Parallel.map(count, threads: threads) { index -> String in
                    UnsafeMutablePointer<Int>(bitPattern: address)![index] += 1
                    return "item \(index)"
                }
                XCTAssertEqual(result, (0..<count).map { "item \($0)" }, "\(threads) threads, \(count) items")
                XCTAssertTrue((0..<count).allSatisfy { calls[$0] == 1 }, "\(threads) threads, \(count) items")
            }
        }
    }

    func testParallelMapUsesThreadsForManyItemsOnly() {
        let few = Parallel.map(Parallel.minimumPerThread - 1, threads: 4) { _ in pthread_self() }
        XCTAssertEqual(Set(few.map { UInt($0) }).count, 1)
        let many = Parallel.map(4 * Parallel.minimumPerThread, threads: 4) { _ -> pthread_t in
            usleep(100)  // long enough that every thread gets some
            return pthread_self()
        }
        XCTAssertEqual(Set(many.map { UInt($0) }).count, 4)
        XCTAssertGreaterThanOrEqual(Parallel.processors, 1)
    }

    // MARK: JailState.decode

    /// The decoder before issue 36 (a dictionary of Strings), kept here to compare with.
    private func referenceDecode(_ text: String) -> JailState? {
        var fields: [String: String] = [:]
        for line in text.utf8.split(separator: UInt8(ascii: "\n")) {
            guard let equals = line.firstIndex(of: UInt8(ascii: "=")) else { continue }
            fields[String(Substring(line[..<equals]))] = String(Substring(line[line.index(after: equals)...]))
        }
        func list(_ field: String?, _ separator: UInt8) -> [String] {
            field.map { $0.utf8.split(separator: separator).map { String(Substring($0)) } } ?? []
        }
        guard let socket = fields["socket"], let pidFile = fields["pidfile"], let uid = fields["uid"].flatMap({ UInt32($0) }),
              let gid = fields["gid"].flatMap({ UInt32($0) }), let supervisor = fields["supervisor"].flatMap({ Int32($0) }),
              let initPid = fields["init"].flatMap({ Int32($0) }), let started = fields["started"].flatMap({ Int64($0) })
        else { return nil }
        var state = JailState(socket: socket, pidFile: pidFile, uid: uid, gid: gid, root: fields["root"] ?? "/",
                              supervisor: supervisor, initPid: initPid, started: started, cgroup: fields["cgroup"] ?? "",
                              ports: fields["ports"] ?? "", rcStatus: fields["rc"].flatMap { Int32($0) },
                              userRange: fields["userns"].flatMap { UInt32($0) }, name: fields["name"] ?? "\(uid)-\(gid)")
        state.version = fields["version"].flatMap { Int($0) } ?? 1
        state.services = list(fields["services"], UInt8(ascii: ","))
        if let start = fields["initstart"].flatMap({ UInt64($0) }), let pidns = fields["pidns"], let mntns = fields["mntns"],
           !pidns.isEmpty, !mntns.isEmpty {
            state.identity = ProcessIdentity(startTime: start, pidNamespace: pidns, mountNamespace: mntns)
        }
        state.control = fields["control"] ?? ""
        state.cgroups = list(fields["cgroups"], UInt8(ascii: ":"))
        state.traffic = fields["traffic"].flatMap { UInt32($0) }
        state.addresses = list(fields["addresses"], UInt8(ascii: ","))
        state.addressShared = fields["addressshared"] == "1"
        state.loopback = fields["loopback"] ?? ""
        state.bootCommands = fields["boot"].flatMap { Int($0) }
        if let forward = fields["forward"] {
            let kinds = forward.split(separator: ",")
            state.forwardAgent = kinds.contains("agent")
            state.forwardX11 = kinds.contains("x11")
        }
        return state
    }

    func testDecodeOnBytesAnswersAsTheDictionaryDecoder() {
        var full = JailState(socket: "/run/jail/jaild-7-7.sock", pidFile: "/run/jail/jaild-7-7.pid", uid: 7, gid: 8, root: "/srv/ä/root",
                             supervisor: 10, initPid: 11, started: 1_700_000_000, cgroup: "/sys/fs/cgroup/unified/jail/j",
                             ports: "tcp:80,udp:53", rcStatus: -3, userRange: 1_081_737_216, name: "web")
        full.identity = ProcessIdentity(startTime: 3_129_107, pidNamespace: "pid:[4026532910]", mountNamespace: "mnt:[4026532907]")
        full.control = "/run/jail/jaild-7-7.ctl"
        full.cgroups = ["/sys/fs/cgroup/unified/jail/j", "/sys/fs/cgroup/memory/jail/j"]
        full.services = ["/run/a.sock=/srv/a.sock", "/b=/c"]
        full.forwardAgent = false
        full.forwardX11 = true
        full.bootCommands = 2
        full.traffic = 59682
        full.addresses = ["192.0.2.10", "2001:db8::1"]
        full.addressShared = true
        full.loopback = "127.77.0.1"
        let encoded = full.encoded()
        XCTAssertEqual(JailState.decode(encoded), full)
        XCTAssertEqual(JailState.decode(Array(encoded.utf8)), full)

        let minimal = "socket=/s\npidfile=/p\nuid=1\ngid=1\nsupervisor=2\ninit=3\nstarted=4\n"
        var cases = [encoded, minimal, "", "\n\n", "socket=/x\n", String(encoded.reversed().split(separator: "\n").joined(separator: "\n"))]
        // Lines in any order, repeated (the last wins), unknown or without '=', values with '='.
        let lines = encoded.split(separator: "\n").map(String.init)
        cases.append((lines.reversed() + ["junk", "unknown=1", "=", "name=a=b"]).joined(separator: "\n"))
        cases.append((lines + ["uid=9", "name=second"]).joined(separator: "\n") + "\n")
        // Numbers Swift's parser reads or refuses: signs, zeros, overflow, spaces, empty.
        for value in ["+5", "-5", "-0", "007", "4294967295", "4294967296", "99999999999999999999", " 5", "5 ", "", "x", "1e3"] {
            for key in ["uid", "supervisor", "started", "rc", "userns", "version", "initstart", "traffic", "boot"] {
                cases.append(minimal + "\(key)=\(value)\ninitstart=1\npidns=p\nmntns=m\n")
            }
        }
        // Empty identity parts, an addressshared that is not "1", forward kinds, CR before LF.
        cases.append(minimal + "initstart=5\npidns=\nmntns=m\naddressshared=yes\nforward=\n")
        cases.append(minimal + "forward=x11,agent,,\naddresses=,a,,b,\ncgroups=::a::b\nservices=,\n")
        cases.append(minimal.replacingOccurrences(of: "\n", with: "\r\n"))
        cases.append(minimal + "name=\u{1b}[2J\u{202e}\nroot=/r\u{301}\n")
        for text in cases {
            XCTAssertEqual(JailState.decode(text), referenceDecode(text), text.debugDescription)
        }
        // Bytes that are not UTF-8 are repaired field by field as the whole text was.
        let bad: [UInt8] = Array(minimal.utf8) + Array("name=a".utf8) + [0xff, 0xc3] + Array("\nroot=/\u{e9}".utf8) + [0x80]
        XCTAssertEqual(JailState.decode(bad), referenceDecode(String(decoding: bad, as: UTF8.self)))
    }

    func testParseIntegerAnswersAsSwiftsParser() {
        for text in ["0", "1", "+1", "-1", "-0", "0001", "18446744073709551615", "18446744073709551616", "999999999999999999",
                     "9223372036854775807", "", " 1", "1 ", "1a", "+", "-"] {
            let bytes = Array(text.utf8)
            bytes.withUnsafeBufferPointer { buffer in
                XCTAssertEqual(parseInteger(buffer) as UInt64?, UInt64(text), text)
                XCTAssertEqual(parseInteger(buffer) as Int32?, Int32(text), text)
                XCTAssertEqual(parseInteger(buffer) as UInt32?, UInt32(text), text)
                XCTAssertEqual(parseInteger(buffer) as Int64?, Int64(text), text)
            }
        }
    }

    // MARK: Rendering

    /// The renderer before issue 36.
    private func referenceTable(_ rawLines: [[String]]) -> String {
        let lines = rawLines.map { $0.map(Logfmt.printable) }
        guard let header = lines.first else { return "" }
        let widths = (0..<header.count).map { column in lines.map { $0[column].count }.max() ?? 0 }
        return lines.map { line in
            line.enumerated().map { column in
                column.offset == line.count - 1 ? column.element
                    : column.element + String(repeating: " ", count: widths[column.offset] - column.element.count)
            }.joined(separator: "  ") + "\n"
        }.joined()
    }

    func testTableFastPathMatchesThePaddingByCharacters() {
        let lines = [["NAME", "ROOT", "LAST"], ["ä-jail", "/r\u{1b}[2J", "x"], ["plain", "/srv/a/root", "é\u{301}"], ["", "", ""]]
        XCTAssertEqual(TextTable.render(lines), referenceTable(lines))
        XCTAssertEqual(TextTable.render([]), "")
        // Enough lines for the threads.
        let many = [["A", "B", "C"]] + (0..<500).map { ["jail-\($0)", $0 % 7 == 0 ? "ü\u{202e}\($0)" : String(repeating: "x", count: $0 % 40), "\($0)"] }
        XCTAssertEqual(TextTable.render(many), referenceTable(many))
        let wide = [["A", "B"], [String(repeating: "x", count: 200), "y"]]
        XCTAssertEqual(TextTable.render(wide), "A" + String(repeating: " ", count: 201) + "B\n" + wide[1][0] + "  y\n")
    }

    func testJSONStringFastPathMatchesLogfmt() {
        for text in ["", "plain /srv/a", "q\"uote", "back\\slash", "new\nline", "\u{1b}[2J", "\u{202e}x", "é", "\u{7f}", "~"] {
            XCTAssertEqual(Row.jsonString(text), Logfmt.json(text), text.debugDescription)
        }
    }

    func testMetricsRenderMatchesTheFamilyByFamilyLoop() {
        let jails = (0..<300).map { (index: Int) -> Metrics.Figures in
            let name: String = index % 5 == 0 ? "j\"\(index)\u{1b}" : "jail-\(index)"
            var jail = Metrics.Figures(name: name, uid: UInt32(index), started: Int64(index))
            jail.cpuSeconds = index % 2 == 0 ? Double(index) / 3 : nil
            jail.memoryBytes = index % 3 == 0 ? UInt64(index) : nil
            jail.pids = index == 7 ? 7 : nil
            jail.sessions = index
            jail.rcExitStatus = index % 11 == 0 ? 1 : nil
            return jail
        }
        var reference = ""
        for family in Metrics.families {
            let samples = jails.compactMap { jail in family.value(jail).map { (jail, $0) } }
            guard !samples.isEmpty else { continue }
            reference += "# HELP \(family.name) \(Metrics.escapeHelp(family.help))\n# TYPE \(family.name) \(family.type)\n"
            for (jail, value) in samples {
                reference += "\(family.name){jail=\"\(Metrics.escapeLabel(Logfmt.printable(jail.name)))\",uid=\"\(jail.uid)\"} \(value)\n"
            }
        }
        XCTAssertEqual(Metrics.render(jails), reference)
    }

    func testEscapeLabelFastPathMatchesTheScalarLoop() {
        XCTAssertEqual(Metrics.escapeLabel("plain"), "plain")
        XCTAssertEqual(Metrics.escapeLabel("a\"b"), "a\\\"b")
        XCTAssertEqual(Metrics.escapeLabel("a\"b", quote: false), "a\"b")
        XCTAssertEqual(Metrics.escapeLabel("é\n\\"), "é\\n\\\\")
    }

    func testNormalizeFastPathAnswersAsTheSplit() {
        func reference(_ path: String) -> String { "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/") }
        var paths = ["", "/", "//", "/.", "/./", "/..", "/a", "/a/", "/a//b", "/a/./b", "/a/.", "/a/..", "/a/.b", "/a/b.", "a", "a/b",
                     "./a", "/srv/ä/root", "/r\u{301}/x", "/a\r\n/b", "/a\u{7f}", "/tmp/jail-scale-gb54x0je/state/sb00122/root"]
        // Every string of up to five of these characters.
        let alphabet = ["/", ".", "a"]
        var level = [""]
        for _ in 0..<5 {
            level = level.flatMap { prefix in alphabet.map { prefix + $0 } }
            paths += level
        }
        for path in paths {
            XCTAssertEqual(BindMount.normalize(path), reference(path), path.debugDescription)
            if BindMount.isNormal(path) { XCTAssertEqual(reference(path), path, path.debugDescription) }
        }
        XCTAssertTrue(BindMount.isNormal("/tmp/jail-scale-gb54x0je/state/sb00122/root"))
    }

    // MARK: Cgroup files

    /// A v2 parent's `cgroup.subtree_control` decides which controller files its children
    /// have: the rest are not opened. A parent without one (v1) has every file tried.
    func testCgroupParentsSkipWhatTheParentDoesNotEnable() throws {
        let root = "/tmp/jail-listfast-test-\(getpid())"
        defer { removeTree(root) }
        let v2 = root + "/unified/jail/x", v1 = root + "/memory/jail/x"
        XCTAssertEqual(makeFixtureDirectories(v2 + "/programs"), 0)
        XCTAssertEqual(makeFixtureDirectories(v1 + "/programs"), 0)
        try writeFixture(root + "/unified/jail/cgroup.subtree_control", "cpu pids\n")
        // Files a real v2 child without memory would not have: present here, to see them skipped.
        try writeFixture(v2 + "/memory.current", "4096\n")
        try writeFixture(v2 + "/memory.usage_in_bytes", "4096\n")
        try writeFixture(v2 + "/pids.current", "5\n")
        try writeFixture(v2 + "/cpu.stat", "usage_usec 1000000\n")
        try writeFixture(v1 + "/memory.usage_in_bytes", "8192\n")

        let parents = CgroupParents(directories: [v2, v1, v2])
        XCTAssertEqual(parents.enabled.count, 1)
        XCTAssertEqual(parents.controllers(v2), ["cpu", "pids"])
        XCTAssertNil(parents.controllers(v1))
        XCTAssertNil(parents.controllers("relative"))
        XCTAssertTrue(parents.mayHave(v2, "pids"))
        XCTAssertFalse(parents.mayHave(v2, "memory"))
        XCTAssertTrue(parents.mayHave(v1, "memory"))
        XCTAssertEqual(parents.memoryFiles(v2), [])
        XCTAssertEqual(parents.memoryFiles(v1), ["memory.current", "memory.usage_in_bytes"])
        XCTAssertNotNil(parents.enabled.first?.descriptor)
        XCTAssertNotNil(parents.status("programs", in: v2))
        XCTAssertNil(parents.status("programs/payload", in: v2))
        XCTAssertNotNil(parents.status("programs", in: v1))
        XCTAssertNil(parents.status("payload", in: v1))
        // A directory's link count is 2 + its subdirectories (here as in cgroupfs).
        var state = JailState(socket: "s", pidFile: "p", uid: 9, gid: 9, root: "/", supervisor: 1, initPid: 0, started: 0,
                              cgroup: v2)
        XCTAssertFalse(Row.mayHavePayload(state, parents))
        XCTAssertFalse(Row.mayHavePayload(state))
        XCTAssertEqual(makeFixtureDirectories(v2 + "/programs/payload"), 0)
        XCTAssertTrue(Row.mayHavePayload(state, parents))
        XCTAssertTrue(Row.mayHavePayload(state))
        rmdir(v2 + "/programs/payload")
        state.cgroup = root + "/unified/jail/none"
        XCTAssertFalse(Row.mayHavePayload(state, parents))

        XCTAssertEqual(CgroupFigures(directories: [v2, v1], parents: parents).memoryCharge, 8192)
        XCTAssertEqual(CgroupFigures(directories: [v2, v1]).memoryCharge, 4096)

        var jail = JailState(socket: "s", pidFile: "p", uid: 9, gid: 9, root: root + "/nonexistent/root", supervisor: 1,
                             initPid: 0, started: 42, cgroup: "", name: "x")
        jail.cgroups = [v2, v1]
        let figures = Metrics.read(jail, sessions: nil, cgroupParents: parents)
        XCTAssertEqual(figures.memoryBytes, 8192)
        XCTAssertEqual(figures.pids, 5)
        XCTAssertEqual(figures.cpuSeconds, 1)

        // Memory enabled: memory.current is read, never the v1 file of a v2 directory.
        try writeFixture(root + "/unified/jail/cgroup.subtree_control", "memory\n")
        try writeFixture(v2 + "/memory.usage_in_bytes", "1\n")
        XCTAssertEqual(CgroupParents(directories: [v2]).memoryFiles(v2), ["memory.current"])
        removeFile(v2 + "/memory.current")
        XCTAssertNil(CgroupFigures(directories: [v2], parents: CgroupParents(directories: [v2])).memoryCharge)
    }

    func testCountersReadOnBytesAsTheTextParser() throws {
        let root = "/tmp/jail-listfast-counters-\(getpid())"
        XCTAssertEqual(makeFixtureDirectories(root), 0)
        defer { removeTree(root) }
        for (text, expected) in [("5\n", UInt64(5)), ("5", 5), (" 5 \n", 5), ("max\n", nil), ("\n", nil), ("", nil), ("-1\n", nil),
                                 ("18446744073709551615\n", UInt64.max), ("5\r\n", nil)] as [(String, UInt64?)] {
            try writeFixture(root + "/value", text)
            XCTAssertEqual(Metrics.counter(root + "/value"), expected, text.debugDescription)
        }
        XCTAssertNil(Metrics.counter(root + "/missing"))
        try writeFixture(root + "/stat", "usage_usec 2500000\nuser_usec  1\nsystem_usec 2 3\n\nempty\n")
        XCTAssertEqual(Metrics.keyed(root + "/stat", "usage_usec"), 2_500_000)
        XCTAssertEqual(Metrics.keyed(root + "/stat", "user_usec"), 1)
        XCTAssertNil(Metrics.keyed(root + "/stat", "system_usec"))
        XCTAssertNil(Metrics.keyed(root + "/stat", "empty"))
        XCTAssertNil(Metrics.keyed(root + "/stat", "usage"))
    }

    // MARK: Helpers

    private func removeFile(_ path: String) {
        XCTAssertEqual(unlink(path), 0, path)
    }

    private func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in listDirectory(path) { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}
