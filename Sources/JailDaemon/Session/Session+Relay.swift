import JailIO
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The session's side of the relay (JailIO/Relay.swift): its pty or pipes, SIGCHLD as the
/// program's end, and the hangup when the client is gone.
extension Session {
    func relay(channel: FrameChannel, signals: SignalDescriptor, early: [Message]) -> Relay {
        let pid = self.pid
        let pty = self.pty
        let program = Relay.Program(
            input: pty?.master ?? input,
            outputs: pty.map { [(stream: UInt8(1), fd: $0.master)] } ?? outputs,
            terminal: pty != nil,
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
            },
            resize: { size in try? pty?.resize(size) })
        return Relay(channel: channel, program: program, early: early)
    }

    /// The client is gone: hang up on the program's process group, as a terminal hangup would.
    func hangUp() {
        kill(-pid, SIGHUP)
        kill(-pid, SIGCONT)
    }
}
