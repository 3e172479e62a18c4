import JailIO
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The session's side of the relay (JailIO/Relay.swift): its pipes, SIGCHLD as the program's
/// end, the hangup when the client is gone; in terminal mode, the pty master handed to the
/// client.
extension Session {
    /// Terminal mode: sends the `terminal` frame with the pty master (SCM_RIGHTS) and closes
    /// the helper's copy, so the client relays between its terminal and the master itself:
    /// one process and no socket less on each keystroke and each screenful. What the program
    /// printed meanwhile waits in the pty. If the client is gone already, the channel is
    /// marked closed and the relay returns at once (the hangup follows).
    ///
    /// The helper holds no end of the pty after this: when the client goes, its copy closes
    /// and the kernel hangs the pty up; when every holder of the slave has closed it, the
    /// client reads EIO. Nothing but bytes and window sizes goes from the host into the jail.
    func handOverTerminal(_ channel: inout FrameChannel) {
        guard let pty else { return }
        defer { pty.master.closeQuietly() }
        channel.flushFully()
        let frame = FrameEncoder.encode(.terminal)
        while !channel.isClosed {
            do {
                let sent = try UnixSocket.send(channel.socket, frame, passing: [pty.master.rawValue])
                // The descriptor travels with the first byte; a short send leaves the rest queued.
                channel.enqueue(Array(frame[sent...]))
                channel.flushFully()
                return
            } catch {
                if error.errno == .resourceTemporarilyUnavailable || error.errno == .interrupted {
                    try? channel.socket.waitWritable()
                } else {
                    channel.markClosed()
                }
            }
        }
    }

    func relay(channel: FrameChannel, signals: SignalDescriptor, early: [Message]) -> Relay {
        let pid = self.pid
        let program = Relay.Program(
            input: input,
            outputs: outputs,
            exitEvents: signals.fd,
            reap: {
                // SIGTERM and SIGHUP reach the helper when the jail shuts down: the program
                // gets its own, and the helper stays to report how it ended.
                guard let pending = try? signals.drain() else { return nil }
                var code: Int32?
                for (signal, _) in pending where signal == SIGCHLD {
                    if let (_, exited) = reapChild(pid) { code = exited }
                }
                return code
            })
        return Relay(channel: channel, program: program, early: early)
    }

    /// The client is gone: hang up on the program's process group, as a terminal hangup would.
    func hangUp() {
        do {
            try sendSignal(SIGHUP, to: -pid)
            try sendSignal(SIGCONT, to: -pid)
        } catch {
            // The helper is root and the group the program's: only a bug gets here, and then
            // the program outlives its client until the jail stops.
            log.error("session: no hangup for the program's process group: \(error)")
        }
    }
}
