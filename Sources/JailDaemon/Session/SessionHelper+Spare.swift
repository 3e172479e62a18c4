import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The spare session helper's wait (init's side: Init+Spare.swift). What a helper does before
/// it reads a client's first byte is done here ahead of time: the fork, its move into the
/// sessions cgroup (a cgroup write can wait for the kernel's RCU) and its signalfd. Then it
/// blocks until init hands it a connection, and from there it is an ordinary helper that
/// closes the socketpair once its program runs (init then forks the next spare).
///
/// It does not rehearse the session's code to fault its pages in ahead: measured, that bought
/// nothing a client could see (0.28 ms from hand-off to the program's exec either way) and it
/// made the idle spare hold 2.5 MiB of jaild's pages instead of 0.3 (docs/benchmarks.md).
extension SessionHelper {
    static func waitAsSpare(channel: FileDescriptor, configuration: JailConfiguration, settings: ProgramSettings,
                            jail: String, sessionCgroups: [Int32]) -> Never {
        cj_set_proctitle("jaild: spare")
        SessionCgroup.join(sessionCgroups)
        let signals: SignalDescriptor
        do { signals = try SignalDescriptor(signalSet) } catch {
            log.error("spare session helper: \(error)")
            _exit(1)
        }

        // Blocking: nothing else to do until init writes, and its end of file (a stop) ends us.
        var bytes = [UInt8](repeating: 0, count: 64)
        var fds: [Int32] = [-1]
        var count: Int32 = 0
        let n = bytes.withUnsafeMutableBytes { cj_spare_wait(channel.rawValue, $0.baseAddress, $0.count, &fds, 1, &count) }
        guard n > 0, count == 1, let handOff = SpareHandOff(bytes: Array(bytes.prefix(n))) else {
            if count == 1 { close(fds[0]) }
            _exit(0)
        }
        cj_set_proctitle("jaild: session")
        serve(connection: FileDescriptor(rawValue: fds[0]), signals: signals, configuration: configuration,
              settings: settings, jail: jail, id: handOff.id, hostRoot: handOff.hostRoot, startedNotice: channel)
    }
}
