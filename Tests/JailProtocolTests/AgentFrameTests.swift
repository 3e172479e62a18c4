import JailProtocol
import XCTest

final class AgentFrameTests: XCTestCase {
    func testAgentFramesAreBoundedAndTheHelloSaysIfAnAgentIsOffered() throws {
        var decoder = FrameDecoder()
        decoder.append(FrameEncoder.encode(.agentData(channel: 1, bytes: Array(repeating: 0, count: (64 << 10) + 1))))
        XCTAssertThrowsError(try decoder.next())
        var truncated = FrameDecoder()
        truncated.append([0, 0, 0, 3, FrameType.agentClose.rawValue, 0, 0])
        XCTAssertThrowsError(try truncated.next())
        let hello = Hello(mode: .stdio(passed: []), login: false, arguments: [], environment: [], offersAgent: true)
        let frame = FrameEncoder.encode(.hello(hello))
        XCTAssertEqual(frame[5 + 6] & Hello.agentFlag, Hello.agentFlag)
        var d = FrameDecoder()
        d.append(frame)
        XCTAssertEqual(try d.next(), .hello(hello))
    }
}
