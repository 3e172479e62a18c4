import JailIO
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Terminal mode after the hello: the session helper passes the jail pty's master with the
/// `terminal` frame, and from then on the client relays its terminal to it directly
/// (MasterRelay). The connection carries only what is not the terminal's bytes: agent
/// channels, an error, and the exit status, last. On the exit frame the client drains what
/// the program left in the pty before it returns the status, so the status never overtakes
/// the output.
extension ClientSession {
    mutating func relayTerminal(_ channelIn: FrameChannel, signals: SignalDescriptor) throws(ClientError) -> Int32 {
        var channel = channelIn
        let (master, behind) = try awaitMaster(&channel, signals: signals)
        var relay = MasterRelay(master: master)
        MasterRelay.copyWindowSize(to: master)
        var agents = agentChannels()
        var poller = Poller()
        var messages = behind
        while true {
            for message in messages {
                switch message {
                case .agentOpen, .agentData, .agentClose: _ = agents.handle(message, channel: &channel)
                case .exit(let code):
                    relay.drain()
                    if relay.stdoutGone { leave(by: SIGPIPE) }
                    return code
                case .error(let reason): throw .refused(reason)
                default: throw .protocolError(.invalidValue("\(message.type) frame from the server"))
                }
            }
            messages = []
            if channel.isClosed { throw .connectionLost }
            poller.reset()
            let signalIndex = poller.add(signals.fd.rawValue, read: true)
            let socketIndex = poller.add(channel.socket.rawValue, read: true, write: channel.wantsWrite)
            let stdinIndex = stdinOpen && relay.pendingInput == 0 ? poller.add(0, read: true) : -1
            let readMaster = relay.canReadOutput
            let writeMaster = relay.pendingInput > 0
            let masterIndex = readMaster || writeMaster
                ? poller.add(relay.master.rawValue, read: readMaster, write: writeMaster) : -1
            let outputIndex = relay.pendingOutput > 0 ? poller.add(relay.output.rawValue, write: true) : -1
            let agentWatches = agents.register(&poller, canSend: channel.canAcceptMore)
            do { _ = try poller.wait() } catch { throw .system(error) }

            if poller.readable(signalIndex) { try handleSignals(signals, master: relay.master) }
            if outputIndex >= 0 && poller.writable(outputIndex) { relay.flushOutput() }
            if masterIndex >= 0 {
                if writeMaster && poller.writable(masterIndex) { relay.feedMaster() }
                if readMaster && poller.readable(masterIndex) { relay.forwardOutput() }
            }
            if relay.stdoutGone { leave(by: SIGPIPE) }
            if stdinIndex >= 0 && poller.readable(stdinIndex) && !relay.readInput() { stdinOpen = false }
            agents.service(poller, agentWatches, channel: &channel)
            if poller.writable(socketIndex) { channel.flush() }
            if poller.readable(socketIndex) {
                // Handled at the top of the loop, the exit frame included.
                do { messages = try channel.receive() } catch { throw .protocolError(error) }
            }
            channel.flush()
        }
    }

    /// Reads the connection until the `terminal` frame, with recvmsg: the master travels
    /// with its bytes (SCM_RIGHTS). Only this frame may carry descriptors; later reads are
    /// plain, and the kernel discards anything passed with them. Returns the master and the
    /// frames that came behind it.
    func awaitMaster(_ channel: inout FrameChannel,
                     signals: SignalDescriptor) throws(ClientError) -> (FileDescriptor, [Message]) {
        var received: [Int32] = []
        var poller = Poller()
        while true {
            poller.reset()
            let signalIndex = poller.add(signals.fd.rawValue, read: true)
            let socketIndex = poller.add(channel.socket.rawValue, read: true)
            do { _ = try poller.wait() } catch { throw .system(error) }
            if poller.readable(signalIndex) { try handleSignals(signals, master: nil) }
            guard poller.readable(socketIndex) else { continue }
            let chunk: (bytes: [UInt8], fds: [Int32])?
            do { chunk = try UnixSocket.receive(channel.socket, max: 64 << 10, maxDescriptors: 4) } catch {
                for fd in received { close(fd) }
                throw .system(error)
            }
            guard let chunk else { continue }
            received += chunk.fds
            if chunk.bytes.isEmpty { channel.markClosed() } else { channel.absorb(chunk.bytes) }
            let messages: [Message]
            do { messages = try channel.decodeBuffered() } catch {
                for fd in received { close(fd) }
                throw .protocolError(error)
            }
            for (index, message) in messages.enumerated() {
                switch message {
                case .terminal:
                    return (try PassedMaster.check(received), Array(messages[(index + 1)...]))
                case .error(let reason):
                    for fd in received { close(fd) }
                    throw .refused(reason)
                default:
                    for fd in received { close(fd) }
                    throw .protocolError(.invalidValue("\(message.type) frame before the terminal frame"))
                }
            }
            if channel.isClosed {
                for fd in received { close(fd) }
                throw .connectionLost
            }
        }
    }
}
