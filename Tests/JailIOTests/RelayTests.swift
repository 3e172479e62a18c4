import Foundation
import JailIO
import JailProtocol
import JailSystem
import SystemPackage
import XCTest

/// The relay between a socketpair (the client's end is the test's) and pipes (the program's
/// ends are the test's), run on a thread of its own as the session helper would run it.
final class RelayTests: XCTestCase {
    var client: Int32 = -1
    var programStdin: Int32 = -1
    var programStdout: Int32 = -1
    var programStderr: Int32 = -1
    var exitSignal: Int32 = -1
    let exitCode = Shared<Int32?>(nil)
    var thread: Thread?
    let outcome = Shared<Relay.Outcome?>(nil)
    let finished = DispatchSemaphore(value: 0)
    var decoder = FrameDecoder()

    override func setUp() {
        signal(SIGPIPE, SIG_IGN)
    }

    override func tearDown() {
        for fd in [client, programStdin, programStdout, programStderr, exitSignal] where fd >= 0 { close(fd) }
    }

    func pipePair() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        return (fds[0], fds[1])
    }

    /// Starts a relay for a stdio session with stdin, stdout and stderr relayed.
    func startRelay(early: [Message] = []) {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair), 0)
        client = pair[0]
        let stdin = pipePair()
        let stdout = pipePair()
        let stderr = pipePair()
        let exits = pipePair()
        programStdin = stdin.read
        programStdout = stdout.write
        programStderr = stderr.write
        exitSignal = exits.write
        let code = exitCode
        let program = Relay.Program(
            input: FileDescriptor(rawValue: stdin.write),
            outputs: [(1, FileDescriptor(rawValue: stdout.read)), (2, FileDescriptor(rawValue: stderr.read))],
            exitEvents: FileDescriptor(rawValue: exits.read),
            reap: {
                var byte: UInt8 = 0
                _ = read(exits.read, &byte, 1)
                return code.value
            })
        let server = pair[1]
        let result = outcome
        let done = finished
        let shared = Shared(program)
        let relayThread = Thread {
            var relay = Relay(channel: FrameChannel(socket: FileDescriptor(rawValue: server)), program: shared.value,
                              early: early)
            result.value = relay.run()
            close(server)
            for fd in [stdin.write, stdout.read, stderr.read, exits.read] { close(fd) }
            done.signal()
        }
        thread = relayThread
        relayThread.start()
    }

    /// The program ends with `code` (what SIGCHLD and waitpid tell the helper).
    func programExits(_ code: Int32) {
        exitCode.value = code
        var byte: UInt8 = 1
        XCTAssertEqual(write(exitSignal, &byte, 1), 1)
    }

    func send(_ message: Message) {
        let frame = FrameEncoder.encode(message)
        XCTAssertEqual(frame.withUnsafeBytes { Foundation.send(client, $0.baseAddress, $0.count, 0) }, frame.count)
    }

    /// Frames from the relay until the connection closes (blocking reads).
    func receiveAll() throws -> [Message] {
        var messages: [Message] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = recv(client, &buffer, buffer.count, 0)
            if n <= 0 { break }
            decoder.append(Array(buffer[..<n]))
            while let message = try decoder.next() { messages.append(message) }
        }
        return messages
    }

    func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            offset += n
        }
    }

    func readAll(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { return out }
            out += buffer[..<n]
        }
    }

    func waitForOutcome() -> Relay.Outcome? {
        XCTAssertEqual(finished.wait(timeout: .now() + 20), .success, "the relay did not end")
        return outcome.value
    }

    func output(_ messages: [Message], stream: UInt8) -> [UInt8] {
        messages.flatMap { message -> [UInt8] in
            if case .data(stream, let bytes) = message { return bytes }
            return []
        }
    }

    func testFramesInBytesOutEndOfInputAndStatusLast() throws {
        startRelay(early: [.data(stream: 0, bytes: Array("early ".utf8))])
        send(.data(stream: 0, bytes: Array("hello".utf8)))
        send(.endOfInput)
        // The program sees the bytes, then end of file: the relay closed its stdin pipe.
        XCTAssertEqual(String(decoding: readAll(programStdin), as: UTF8.self), "early hello")
        writeAll(programStdout, Array("out".utf8))
        writeAll(programStderr, Array("err".utf8))
        close(programStdout); programStdout = -1
        close(programStderr); programStderr = -1
        programExits(3)
        let messages = try receiveAll()
        XCTAssertEqual(output(messages, stream: 1), Array("out".utf8))
        XCTAssertEqual(output(messages, stream: 2), Array("err".utf8))
        XCTAssertEqual(messages.last, .exit(code: 3))
        XCTAssertEqual(messages.filter { if case .exit = $0 { true } else { false } }.count, 1)
        XCTAssertEqual(waitForOutcome(), .exited(3))
    }

    func testOutputLeftInThePipeAtExitArrivesBeforeTheStatus() throws {
        startRelay()
        let payload = (0..<60_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        // Written, not closed (a child still holds the pipe), and the program has exited.
        writeAll(programStdout, payload)
        programExits(0)
        let messages = try receiveAll()
        XCTAssertEqual(output(messages, stream: 1), payload)
        XCTAssertEqual(messages.last, .exit(code: 0))
        XCTAssertEqual(waitForOutcome(), .exited(0))
    }

    func testAWriterLeftBehindCannotHoldTheSessionOpen() throws {
        startRelay()
        let writer = programStdout
        programStdout = -1
        let chunk = [UInt8](repeating: 0x41, count: 65536)
        let writing = Thread {
            // Writes until the relay's end is closed (EPIPE).
            while chunk.withUnsafeBytes({ write(writer, $0.baseAddress, $0.count) }) > 0 {}
            close(writer)
        }
        writing.start()
        programExits(0)
        let messages = try receiveAll()
        XCTAssertEqual(messages.last, .exit(code: 0))
        XCTAssertLessThan(output(messages, stream: 1).count, 8 << 20, "the drain after exit is bounded")
        XCTAssertEqual(waitForOutcome(), .exited(0))
    }

    func testASlowReaderStopsTheProgramInsteadOfGrowingTheQueue() throws {
        startRelay()
        let total = 16 << 20
        let payload = (0..<total).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 16)) }
        let written = Shared(0)
        let writer = programStdout
        programStdout = -1
        let writing = Thread {
            var offset = 0
            while offset < payload.count {
                let n = payload[offset...].prefix(65536).withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                offset += n
                written.value = offset
            }
            close(writer)
        }
        writing.start()
        // The client reads nothing for a while: the program is held up at a bounded point
        // (pipe + the relay's queue + the socket buffers), far from all it wants to write.
        Thread.sleep(forTimeInterval: 0.5)
        let stalledAt = written.value
        XCTAssertLessThan(stalledAt, 3 << 20, "the relay buffered without bound")
        XCTAssertGreaterThan(stalledAt, 0)
        // Reading again: every byte, in order, then the status.
        let reader = Shared<[Message]>([])
        let client = self.client
        let decoder = Shared(FrameDecoder())
        let receiving = Thread {
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = recv(client, &buffer, buffer.count, 0)
                if n <= 0 { break }
                decoder.value.append(Array(buffer[..<n]))
                while let message = try? decoder.value.next() { reader.value.append(message) }
            }
        }
        receiving.start()
        while written.value < total { Thread.sleep(forTimeInterval: 0.01) }
        programExits(0)
        XCTAssertEqual(waitForOutcome(), .exited(0))
        while !receiving.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertEqual(output(reader.value, stream: 1) == payload, true)
        XCTAssertEqual(reader.value.last, .exit(code: 0))
    }

    func testInputIsHeldBackWhileTheProgramDoesNotRead() throws {
        startRelay()
        XCTAssertEqual(fcntl(client, F_SETFL, O_NONBLOCK), 0)
        // The client keeps sending without the program reading: the relay stops taking more.
        var sent = 0
        let frame = FrameEncoder.encode(.data(stream: 0, bytes: [UInt8](repeating: 7, count: 65536)))
        var stuck = 0
        while stuck < 20 && sent < 64 << 20 {
            let n = frame.withUnsafeBytes { Foundation.send(client, $0.baseAddress, $0.count, 0) }
            if n > 0 { sent += n; stuck = 0; continue }
            stuck += 1
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertLessThan(sent, 4 << 20, "the relay took input without bound")
        close(client)
        client = -1
        XCTAssertEqual(waitForOutcome(), .clientGone)
    }

    func testTheClientGoingAwayEndsTheRelay() {
        startRelay()
        close(client)
        client = -1
        XCTAssertEqual(waitForOutcome(), .clientGone)
    }

    func testAFrameOnlyTheServerSendsMeansTheClientIsGone() {
        startRelay()
        send(.exit(code: 0))
        XCTAssertEqual(waitForOutcome(), .clientGone)
    }
}
