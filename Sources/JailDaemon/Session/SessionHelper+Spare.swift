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
        setProcessTitle(ProcessTitle.spare)
        SessionCgroup.join(sessionCgroups)
        let signals: SignalDescriptor
        do { signals = try SignalDescriptor(signalSet) } catch {
            log.error("spare session helper: \(error)")
            _exit(1)
        }

        // Nothing else to do until init writes; its end of file (a stop) ends us. The code pages
        // mapped since the fork are given back while we wait.
        waitReadableReleasingCodePages(channel)
        let received: (bytes: [UInt8], fds: [Int32])?
        do { received = try UnixSocket.receive(channel, max: 64, maxDescriptors: 1) } catch { _exit(0) }
        guard let received, received.fds.count == 1, let handOff = SpareHandOff(bytes: received.bytes) else {
            for fd in received?.fds ?? [] { closeDescriptor(fd) }
            _exit(0)
        }
        // Before anything of the client's is read: past its deadline init kills a spare that
        // has not said this, and forks a helper that reads the client from its first byte.
        // A failed send is init gone or the deadline passed (init closed its end): either way
        // the client is another helper's, and this one leaves without a word.
        let acknowledged: Bool
        do { acknowledged = try UnixSocket.send(channel, [SpareHandOff.acknowledgement], passing: []) == 1 } catch { acknowledged = false }
        guard acknowledged else {
            closeDescriptor(received.fds[0])
            _exit(0)
        }
        setProcessTitle("jaild: session")
        serve(connection: FileDescriptor(rawValue: received.fds[0]), signals: signals, configuration: configuration,
              settings: settings, jail: jail, id: handOff.id, hostRoot: handOff.hostRoot, startedNotice: channel)
    }
}
