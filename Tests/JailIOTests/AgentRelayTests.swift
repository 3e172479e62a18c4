import Foundation
import JailIO
import JailProtocol
import JailSystem
import SystemPackage
import XCTest

/// Agent channels through the relay: a program connects to the session's agent socket, the
/// client (the test, over a socketpair) gets agentOpen/agentData frames and answers.
final class AgentRelayTests: XCTestCase {
    var client: Int32 = -1
    var exitSignal: Int32 = -1
    var directory = ""
    var decoder = FrameDecoder()
    let finished = DispatchSemaphore(value: 0)
    let exitCode = Shared<Int32?>(nil)

    override func setUp() {
        signal(SIGPIPE, SIG_IGN)
        directory = NSTemporaryDirectory() + "jail-agent-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(mkdir(directory, 0o700), 0)
    }

    override func tearDown() {
        for fd in [client, exitSignal] where fd >= 0 { close(fd) }
        unlink(directory + "/agent.sock")
        rmdir(directory)
    }

    func startRelay() throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair), 0)
        client = pair[0]
        var exits: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&exits), 0)
        exitSignal = exits[1]
        let exitRead = exits[0]
        let listener = try UnixSocket.listen(path: directory + "/agent.sock")
        let code = exitCode
        let program = Relay.Program(input: nil, outputs: [], exitEvents: FileDescriptor(rawValue: exitRead),
                                    reap: {
                                        var byte: UInt8 = 0
                                        _ = read(exitRead, &byte, 1)
                                        return code.value
                                    })
        let server = pair[1]
        let done = finished
        let shared = Shared(program)
        Thread {
            var relay = Relay(channel: FrameChannel(socket: FileDescriptor(rawValue: server)), program: shared.value)
            relay.agents = AgentChannels(listener: listener)
            _ = relay.run()
            relay.agents.closeAll()
            close(server)
            close(exitRead)
            done.signal()
        }.start()
    }

    func send(_ message: Message) {
        let frame = FrameEncoder.encode(message)
        XCTAssertEqual(frame.withUnsafeBytes { Foundation.send(client, $0.baseAddress, $0.count, 0) }, frame.count)
    }

    /// The next frame, or nil if none comes within `timeout` milliseconds.
    func next(timeout: Int32 = 10_000) throws -> Message? {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            if let message = try decoder.next() { return message }
            var entry = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, timeout) == 1 else { return nil }
            let n = recv(client, &buffer, buffer.count, 0)
            if n <= 0 { return nil }
            decoder.append(Array(buffer[..<n]))
        }
    }

    func connectToAgentSocket() throws -> Int32 {
        try UnixSocket.connect(path: directory + "/agent.sock").rawValue
    }

    func testAConnectionIsCarriedBothWaysAndClosed() throws {
        try startRelay()
        let program = try connectToAgentSocket()
        defer { close(program) }
        XCTAssertEqual(write(program, "request", 7), 7)
        guard case .agentOpen(let id)? = try next() else { return XCTFail("no agentOpen") }
        XCTAssertEqual(try next(), .agentData(channel: id, bytes: Array("request".utf8)))
        send(.agentData(channel: id, bytes: Array("answer".utf8)))
        var buffer = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(read(program, &buffer, 64), 6)
        XCTAssertEqual(Array(buffer[..<6]), Array("answer".utf8))
        // The client's agent closed the channel: the program reads end of file.
        send(.agentClose(channel: id))
        XCTAssertEqual(read(program, &buffer, 64), 0)
        // A program that hangs up closes its channel on the client's side.
        let second = try connectToAgentSocket()
        guard case .agentOpen(let other)? = try next() else { return XCTFail("no second agentOpen") }
        close(second)
        XCTAssertEqual(try next(), .agentClose(channel: other))
        exitCode.value = 0
        XCTAssertEqual(write(exitSignal, "x", 1), 1)
        XCTAssertEqual(try next(), .exit(code: 0))
        XCTAssertEqual(finished.wait(timeout: .now() + 10), .success)
    }

    func testAtMostEightConnectionsAtOnce() throws {
        try startRelay()
        var programs: [Int32] = []
        defer { for fd in programs { close(fd) } }
        for _ in 0..<(AgentChannels.maxChannels + 1) { programs.append(try connectToAgentSocket()) }
        var opened: [UInt32] = []
        for _ in 0..<AgentChannels.maxChannels {
            guard case .agentOpen(let id)? = try next() else { return XCTFail("missing agentOpen") }
            opened.append(id)
        }
        // The ninth waits in the backlog until a channel is free.
        XCTAssertNil(try next(timeout: 300))
        send(.agentClose(channel: opened[0]))
        guard case .agentOpen(let ninth)? = try next() else { return XCTFail("the ninth was never opened") }
        XCTAssertFalse(opened.contains(ninth))
        // The client going away ends the relay.
        shutdown(client, Int32(SHUT_RDWR))
        XCTAssertEqual(finished.wait(timeout: .now() + 10), .success)
    }

    func testAClientWithoutAnAgentClosesEveryChannelAtOnce() throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        client = pair[0]
        defer { close(pair[1]) }
        var channel = FrameChannel(socket: FileDescriptor(rawValue: pair[1]))
        var agents = AgentChannels(connect: nil)
        XCTAssertTrue(agents.handle(.agentOpen(channel: 5), channel: &channel))
        XCTAssertTrue(agents.handle(.agentData(channel: 5, bytes: [1]), channel: &channel))
        XCTAssertFalse(agents.handle(.endOfInput, channel: &channel))
        channel.flushFully()
        XCTAssertEqual(try next(), .agentClose(channel: 5))
        XCTAssertEqual(agents.count, 0)
    }
}
