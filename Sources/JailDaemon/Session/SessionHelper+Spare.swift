import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The spare session helper's wait (init's side: Init+Spare.swift). Everything a helper does
/// before it reads a client's first byte is done here ahead of time: its cgroup, its signalfd,
/// and a rehearsal of the session's pure code, which faults in the pages of code and data a
/// session runs (a fork maps none of init's file pages, and copies each data page it writes).
/// Then it blocks until init hands it a connection, and from there it is an ordinary helper
/// that closes the socketpair once its program runs (init then forks the next spare).
extension SessionHelper {
    static func waitAsSpare(channel: FileDescriptor, configuration: JailConfiguration, settings: ProgramSettings,
                            jail: String, sessionCgroups: [Int32]) -> Never {
        SessionCgroup.join(sessionCgroups)
        cj_set_proctitle("jaild: spare")
        let signals: SignalDescriptor
        do { signals = try SignalDescriptor(signalSet) } catch {
            log.error("spare session helper: \(error)")
            _exit(1)
        }
        SessionRehearsal.run(configuration: configuration)
        cj_prefault_session_stacks()

        // Blocking: nothing else to do until init writes, and its end of file (a stop) ends us.
        let received: (bytes: [UInt8], fds: [Int32])?
        do { received = try UnixSocket.receive(channel, max: 64, maxDescriptors: 1) } catch { _exit(0) }
        guard let received, received.fds.count == 1, let handOff = SpareHandOff(bytes: received.bytes) else {
            for fd in received?.fds ?? [] { close(fd) }
            _exit(0)
        }
        cj_set_proctitle("jaild: session")
        serve(connection: FileDescriptor(rawValue: received.fds[0]), signals: signals, configuration: configuration,
              settings: settings, jail: jail, id: handOff.id, hostRoot: handOff.hostRoot, startedNotice: channel)
    }
}
