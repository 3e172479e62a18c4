import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Adoption: a jaild started for a jail whose supervisor died takes over its running init
/// instead of starting a second jail. Found through the state file, verified against /proc
/// (start time and namespaces, then a pidfd, so a recycled pid is never signalled or adopted),
/// and taken over through init's adoption socket (AdoptionAndEntryChannel).
extension Supervisor {
    /// `…-UID-GID.ctl` beside the socket.
    var controlPath: String { AdoptionAndEntryChannel.controlPath(socketPath: location.socketPath) }

    /// Called with the pid file lock held, so no other supervisor is alive for this socket.
    /// Returns nil when there is nothing to adopt (start afresh), the adopted jail, or throws
    /// when a live init cannot be adopted (the jail runs on untouched).
    func adoptRunningJail(lock: PidFile, report: FileDescriptor?) throws(JailError) -> RunningJail? {
        guard !configuration.rootless, let state = JailState.load(name: cgroupName),
              state.socket == location.socketPath else { return nil }
        let begun = monotonicMilliseconds()
        let pid = state.initPid
        // A jail of a jaild before adoption existed died with its supervisor.
        guard let recorded = state.identity, pid > 0 else { return nil }
        guard ProcessIdentity.of("\(pid)") == recorded else {
            log.info("the earlier init (pid \(pid)) of the jail on \(state.socket) is gone: starting afresh")
            return nil
        }
        // Checked again once the pidfd pins the process: it is init, not a later one.
        let pidfd: FileDescriptor
        do { pidfd = try openProcess(pid) } catch {
            if error.errno == .noSuchProcess { return nil }  // it exited meanwhile: start afresh
            // Starting afresh beside a live init would make a second jail on the same socket.
            throw .failed("cannot take hold of init (pid \(pid)) of the jail on \(state.socket)", error)
        }
        guard ProcessIdentity.of("\(pid)") == recorded else {
            pidfd.closeQuietly()
            return nil
        }
        do throws(JailError) {
            guard state.version == JailState.formatVersion else {
                throw .startFailed(
                    "the jail on \(state.socket) (init pid \(pid)) was started by a jaild with state format \(state.version); "
                        + "this jaild reads format \(JailState.formatVersion): stop the jail (kill -TERM \(pid)) and start it again")
            }
            let adopted = try takeOver(state: state, pidfd: pidfd, identity: recorded)
            recheckRange(state)  // before readiness: once jaild has said "adopted", the range is reserved
            try finishAdoption(state: state, lock: lock, report: report, adopted: adopted, begun: begun)
            return RunningJail(supervisor: self, lock: lock, init: adopted.handle, signals: adopted.signals)
        } catch {
            pidfd.closeQuietly()
            // The pid file stays: it is ours only while we run, and the jail goes on without us.
            lock.fd.closeQuietly()
            throw error
        }
    }

    /// An init taken over: its handle, and what it says of the time it ran alone.
    struct Adoption {
        let handle: InitHandle
        let signals: SignalDescriptor
        let orphanedSeconds: String
        let dropped: String
    }

    /// The handshake: a new lifeline to init, its log and boot pipes back.
    func takeOver(state: JailState, pidfd: FileDescriptor, identity: ProcessIdentity) throws(JailError) -> Adoption {
        let pid = state.initPid
        let what = "init (pid \(pid)) of the jail on \(state.socket)"
        guard state.control == controlPath else {
            throw .startFailed("\(what) has its adoption socket at \(state.control), not \(controlPath)")
        }
        let connection: FileDescriptor
        do { connection = try UnixSocket.connect(path: controlPath) } catch {
            throw .startFailed("\(what) does not answer on \(controlPath): \(error)")
        }
        defer { connection.closeQuietly() }
        let lifeline = try JailError.wrap { () throws(SystemError) in try Pipe.make() }
        defer { lifeline.read.closeQuietly() }
        do { _ = try UnixSocket.send(connection, AdoptionAndEntryChannel.request, passing: [lifeline.read.rawValue]) } catch {
            lifeline.write.closeQuietly()
            throw .startFailed("\(what): cannot send the adoption request: \(error)")
        }
        // Not fatal: an init from before the proof may have answered and closed already, and a
        // newer one refuses a request without it, with the reason.
        if let error = AdoptionAndEntryChannel.sendProof(connection) { log.info("\(what): proof of host root not sent: \(error)") }
        var answer: (bytes: [UInt8], fds: [Int32])?
        var unanswered = "it did not answer within 5 s"
        do {
            if try connection.waitReadable(milliseconds: 5000) {
                answer = try UnixSocket.receive(connection, max: 512, maxDescriptors: 2)
            }
        } catch { unanswered = "its answer cannot be read: \(error)" }
        let fds = answer?.fds ?? []
        func fail(_ reason: String) -> JailError {
            for fd in fds { closeDescriptor(fd) }
            lifeline.write.closeQuietly()
            return .startFailed("\(what) cannot be adopted: \(reason)")
        }
        guard let bytes = answer?.bytes, !bytes.isEmpty else { throw fail(unanswered) }
        guard let reply = AdoptionAndEntryChannel.parseReply(bytes) else { throw fail("it answered something else than an init") }
        guard reply.version == AdoptionAndEntryChannel.version else {
            throw fail("it speaks adoption channel version \(reply.version), this jaild \(AdoptionAndEntryChannel.version): "
                + "stop the jail (kill -TERM \(pid)) and start it again")
        }
        if let refused = reply.refused { throw fail(refused) }
        guard reply.fields["start"] == "\(identity.startTime)", reply.fields["pidns"] == identity.pidNamespace else {
            throw fail("the process on the adoption socket is not that init")
        }
        guard fds.count == 2 else { throw fail("its log pipes did not come with its answer") }
        // The write end lives as long as this process (CLOEXEC): its EOF tells init we are gone.
        _ = lifeline.write
        let signals: SignalDescriptor
        do { signals = try SignalDescriptor([SIGTERM, SIGINT, SIGHUP, SIGCHLD]) } catch {
            for fd in fds { closeDescriptor(fd) }
            throw .system(error)
        }
        let cgroups = state.cgroups.isEmpty ? nil
            : JailCgroups(name: cgroupName, directories: state.cgroups,
                          unifiedDirectory: state.cgroup.isEmpty ? nil : state.cgroup, programDirectories: [])
        let handle = InitHandle(pid: pid, pidfd: pidfd, logPipe: FileDescriptor(rawValue: fds[0]),
                                bootOutput: FileDescriptor(rawValue: fds[1]), cgroups: cgroups)
        return Adoption(handle: handle, signals: signals, orphanedSeconds: reply.fields["orphaned"] ?? "?",
                        dropped: reply.fields["dropped"] ?? "?")
    }

    func finishAdoption(state: JailState, lock: PidFile, report: FileDescriptor?, adopted: Adoption,
                        begun: Int64) throws(JailError) {
        var state = state
        state.supervisor = getpid()
        // Before "adopted" is said: a state naming the dead supervisor would stay behind. The
        // jail runs on without us, as after any refused adoption.
        do { try state.save(as: cgroupName) } catch { throw .state(error) }
        setProcessTitle("jaild: supervisor [\(account.uid):\(account.gid)]")
        if let report {
            Readiness.ready("").send(on: report)
            report.closeQuietly()
        }
        SystemdNotifier.fromEnvironment?.notify("READY=1\nMAINPID=\(getpid())")
        if state.root != (configuration.root ?? "/") || state.ports != (configuration.ports?.description ?? "") {
            log.warning("the adopted jail keeps the root and ports it was started with; stop and start it to apply new ones")
        }
        let took = monotonicMilliseconds() - begun
        log.info("jail \(account.uid):\(account.gid) on \(location.socketPath) adopted: init is pid \(adopted.handle.pid), it ran \(adopted.orphanedSeconds) s without a supervisor (\(adopted.dropped) bytes of log dropped); adoption took \(took) ms")
    }

    /// The adopted jail's id range is re-checked as at a start: still reserved in /etc/subuid
    /// and /etc/subgid (added now if it is missing and free: a jail started by a jaild that
    /// did not reserve) and no other principal's. A conflict is logged as an error, and the
    /// jail is adopted all the same: refusing would not stop it, only leave it running without
    /// a supervisor (its logs dropped, no clean stop) while the conflict stays; the next start
    /// refuses it with the same line.
    func recheckRange(_ state: JailState) {
        guard let start = state.userRange else { return }
        do { try UserRangeStore().recheck(start, ids: [account.uid, account.gid]) } catch {
            log.error("adopted jail \(account.uid):\(account.gid): \(error)")
        }
    }

    /// init's adoption socket: root's (or, rootless, the user's), mode 0600, bound here and
    /// handed to init with the clone, like the jail's socket.
    func bindControlSocket() throws(JailError) -> FileDescriptor {
        let path = controlPath
        try OperatorProof.prepareDirectory()
        // The pid file lock is ours: a socket at this path is a dead jail's.
        if let info = try JailError.wrap({ () throws(SystemError) in try fileStatus(path) }) {
            guard isSocket(info) else { throw .socketInTheWay(path, reason: "a file that is not a socket is in the way") }
            try JailError.wrap { () throws(SystemError) in try removeFile(path) }
        }
        return try JailError.wrap { () throws(SystemError) in
            let listener = try withFileCreationMask(0o077) { () throws(SystemError) in try UnixSocket.listen(path: path, backlog: 4) }
            do throws(SystemError) { try setMode(path, 0o600) } catch {
                listener.closeQuietly()
                discardFile(path)
                throw error
            }
            return listener
        }
    }
}
