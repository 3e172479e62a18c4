import Foundation
@testable import JailDaemon
import JailSystem
import SystemPackage
import XCTest

final class ServiceRelayTests: XCTestCase {
    func testProxyHeaderBytes() {
        let header = ProxyHeader.make(jail: "mail", uid: 1000, pid: 42, jailPath: "/run/s.sock")
        XCTAssertEqual(Array(header[0..<12]), Array("\r\n\r\n\0\r\nQUIT\n".utf8))
        XCTAssertEqual(header[12], 0x21)
        XCTAssertEqual(header[13], 0x31)
        let tlvs: [UInt8] = [0xE0, 0, 4] + Array("mail".utf8) + [0xE1, 0, 15] + Array("uid=1000 pid=42".utf8)
        XCTAssertEqual(Int(header[14]) << 8 | Int(header[15]), 216 + tlvs.count)
        XCTAssertEqual(header.count, 16 + 216 + tlvs.count)
        XCTAssertEqual(Array(header[16..<124]), [UInt8](repeating: 0, count: 108), "the caller's address is unnamed")
        XCTAssertEqual(Array(header[124..<135]), Array("/run/s.sock".utf8))
        XCTAssertTrue(header[135..<232].allSatisfy { $0 == 0 })
        XCTAssertEqual(Array(header[232...]), tlvs)
    }

    func testServiceSpecParsing() throws {
        let plain = try ServiceSpec.parse("/run//tmcc.sock=/run/hostsvc/tmcc/tmcc.sock")
        XCTAssertEqual(plain.jailPath, "/run/tmcc.sock")
        XCTAssertEqual(plain.hostPath, "/run/hostsvc/tmcc/tmcc.sock")
        XCTAssertEqual(plain.mode, 0o666)
        XCTAssertEqual(plain.header, .proxy)
        XCTAssertEqual(plain.maxConnections, 64)
        XCTAssertNil(plain.owner)
        let full = try ServiceSpec.parse("/run/a.sock=/h/a.sock,mode=0660,owner=0:100,header=none,max=8")
        XCTAssertEqual(full.mode, 0o660)
        XCTAssertEqual(full.owner?.uid, 0)
        XCTAssertEqual(full.owner?.gid, 100)
        XCTAssertEqual(full.header, ServiceSpec.Header.none)
        XCTAssertEqual(full.maxConnections, 8)
        XCTAssertEqual(try ServiceSpec.parse("/a=/b,owner=7").owner?.gid, 7)
        for bad in ["/run/a.sock", "run/a=/h", "/a=h", "/a=/h,mode=999", "/a=/h,max=0", "/a=/h,header=v1", "/a=/h,owner=x",
                    "/a=/h,colour=red", "/a/../b=/h", "/=/h", "/a=/h/", "/a=/" + String(repeating: "x", count: 120)] {
            XCTAssertThrowsError(try ServiceSpec.parse(bad), bad)
        }
        let two = try ["/run/x=/a", "/run//x=/b"].map { try ServiceSpec.parse($0) }
        XCTAssertEqual(ServiceSpec.duplicate(in: two), "/run/x")
    }

    /// The relay's side over socketpairs: bytes both ways, each end of file passed on after the
    /// bytes before it, and reads stop while the other side's queue is full (backpressure).
    func testConnectionRelaysHalfClosesAndBoundsItsQueues() throws {
        let (tenant, tenantPeer) = try pair()
        let (host, hostPeer) = try pair()
        var connection = ServiceConnection(tenant: tenant, host: host, service: 0, deadline: 0)
        connection.toHost.append(Array("HDR".utf8))
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: ByteQueue.limit, alignment: 16)
        defer { scratch.deallocate() }
        let all = Int16(POLLIN | POLLOUT)
        XCTAssertEqual(write(tenantPeer.rawValue, "hello", 5), 5)
        shutdown(tenantPeer.rawValue, Int32(SHUT_WR))
        for _ in 0..<4 { _ = connection.step(tenantRevents: all, hostRevents: all, scratch: scratch) }
        XCTAssertEqual(try readAll(hostPeer), Array("HDRhello".utf8), "header first, then the tenant's bytes, then its end")
        XCTAssertEqual(write(hostPeer.rawValue, "reply", 5), 5)
        shutdown(hostPeer.rawValue, Int32(SHUT_WR))
        var last = ServiceConnection.Step.more
        for _ in 0..<4 where last == .more { last = connection.step(tenantRevents: all, hostRevents: all, scratch: scratch) }
        XCTAssertEqual(last, .done)
        XCTAssertEqual(try readAll(tenantPeer), Array("reply".utf8))
        connection.close()
        // A host that never reads: the tenant's bytes stop at the queue's limit plus what the
        // sockets' buffers hold, the relay's memory does not grow.
        let (tenant2, tenantPeer2) = try pair()
        let (host2, _) = try pair()
        var stuck = ServiceConnection(tenant: tenant2, host: host2, service: 0, deadline: 0)
        try tenantPeer2.setNonBlocking(true)
        let chunk = [UInt8](repeating: 7, count: 65536)
        for _ in 0..<64 {
            _ = chunk.withUnsafeBytes { send(tenantPeer2.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            _ = stuck.step(tenantRevents: all, hostRevents: all, scratch: scratch)
        }
        XCTAssertEqual(stuck.tenantEvents & Int16(POLLIN), 0, "a full queue stops reading the tenant")
        XCTAssertEqual(stuck.toHost.room, 0)
        stuck.close()
    }

    func testInfoJSONParses() throws {
        var configuration = JailConfiguration(uid: 1000)
        configuration.jailName = "mail\u{202e}"
        configuration.hostname = "box"
        configuration.limits = CgroupLimits(memory: 1 << 30, pids: 100, cpus: 1.5)
        configuration.services = [try ServiceSpec.parse("/run/tmcc.sock=/secret/host/tmcc.sock")]
        configuration.jaildVersion = "9.9"
        let account = Account(name: "u", uid: 1000, gid: 1000, groups: [], home: "/home/u", shell: "/bin/sh")
        let text = JailInfo.render(configuration: configuration, account: account, startedAt: 1_700_000_000)
        XCTAssertFalse(text.contains("/secret"), "a host path inside")
        XCTAssertFalse(text.unicodeScalars.contains("\u{202e}"), "raw bidi in the file")
        let info = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(info["version"] as? Int, 1)
        XCTAssertEqual(info["name"] as? String, "mail\u{202e}")
        XCTAssertEqual((info["limits"] as? [String: Any])?["cpus"] as? Double, 1.5)
        XCTAssertEqual(((info["services"] as? [[String: Any]])?.first)?["path"] as? String, "/run/tmcc.sock")
        XCTAssertEqual(info["started"] as? Int, 1_700_000_000)
    }

    /// The state keeps the services in a key older jailds ignore; a state without it has none.
    func testStateKeepsServicesAndListShowsThem() {
        var state = JailState(socket: "/s", pidFile: "/p", uid: 1, gid: 1, root: "/r", supervisor: 2, initPid: 3,
                              started: 4, cgroup: "")
        state.services = ["/run/a.sock=/h/a.sock", "/run/b.sock=/h/x=y.sock"]
        XCTAssertEqual(JailState.decode(state.encoded())?.services, state.services)
        XCTAssertEqual(JailState.decode("socket=/s\npidfile=/p\nuid=1\ngid=1\nsupervisor=2\ninit=3\nstarted=4\n")?.services, [])
        XCTAssertEqual(Row.servicesJSON(state.services),
                       "{\"path\":\"/run/a.sock\",\"host_path\":\"/h/a.sock\"},{\"path\":\"/run/b.sock\",\"host_path\":\"/h/x=y.sock\"}")
        XCTAssertThrowsError(try ServiceSpec.parse("/run/a\nservices=x=/h"), "a newline would add a line to the state file")
    }

    /// `service` is a config key that may repeat: one `--service` argument each.
    func testConfigFileServiceLinesRepeat() throws {
        let entries = try ConfigFile.parse("service = /run/a.sock=/h/a.sock\nservice = /run/b.sock=/h/b.sock,header=none\n", path: "t.conf")
        let arguments = try entries.flatMap { try ConfigFile.arguments(for: $0, path: "t.conf") }
        XCTAssertEqual(arguments, ["--service", "/run/a.sock=/h/a.sock", "--service", "/run/b.sock=/h/b.sock,header=none"])
    }

    func pair() throws -> (FileDescriptor, FileDescriptor) {
        var ends: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends), 0)
        return (FileDescriptor(rawValue: ends[0]), FileDescriptor(rawValue: ends[1]))
    }

    func readAll(_ fd: FileDescriptor) throws -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd.rawValue, &buffer, buffer.count)
            if n <= 0 { return out }
            out += buffer[..<n]
        }
    }
}
