import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The spare session helper, init's side. A session used to begin with init forking a helper,
/// which then joined its cgroup and made its signalfd while the client waited. Now one helper is
/// forked and set up ahead of time (SessionHelper+Spare.swift); a client's connection is handed
/// to it over a socketpair.
/// The next spare is forked once that session's program runs (the helper closes the socketpair
/// then): forked at once, its warm-up took a CPU from the session it was meant to speed up.
/// init still accepts, checks the peer and counts the sessions itself, so nothing about who may
/// enter changes.
///
/// The spare is root inside's to stop (SIGSTOP) or slow down, and a send into the socketpair
/// succeeds whether it reads or not. So the spare acknowledges each hand-off (one byte, before it
/// reads anything of the client's), and init keeps its own copy of the connection until then.
/// No acknowledgement by the deadline: the spare is killed and a helper forked for the session.
/// init never waits for it: the pending hand-off is one more thing its poll loop watches.
struct SpareHelper {
    let pid: pid_t
    /// init's end of the socketpair the connection travels through.
    let channel: FileDescriptor
}

/// A connection sent to the spare and not acknowledged yet.
struct PendingHandOff {
    let spare: SpareHelper
    /// init's copy of the client's connection, for a forked helper if the spare does not take it.
    let connection: FileDescriptor
    let id: Int
    let hostRoot: Bool
    let deadline: Int64
}

extension Init {
    /// How long a spare has to acknowledge a hand-off. Measured (strace's timestamps of init's
    /// sendmsg and the spare's answer, 12 sessions, a 2-core machine busy with other builds):
    /// 0.31–0.57 ms, strace's own cost included. 250 ms is hundreds of times that and more than
    /// two periods of a `sessions` cgroup throttled by `--cpus` (100 ms each), and it is all a
    /// stopped spare costs the session.
    static let handOffDeadlineMilliseconds: Int64 = 250

    /// Forks a spare if there is none, none is on its way and the jail may take one more session.
    mutating func forkSpare() {
        guard spare == nil, startingSession == nil, handOff == nil, !stopping,
              tenantSessions < configuration.maxSessions else { return }
        guard let (mine, theirs) = try? UnixSocket.pair() else { return }
        // Else the spare would keep the data pages init only read, mapped, for as long as it waits.
        releaseDataFilePages()
        let pid: pid_t
        do { pid = try forkProcess() } catch {
            log.error("fork of a spare session helper: \(error.errno)")
            mine.closeQuietly()
            theirs.closeQuietly()
            return
        }
        if pid == 0 {
            mine.closeQuietly()
            listener.closeQuietly()
            signals.fd.closeQuietly()
            serviceRelayStop?.closeQuietly()  // else the relay's stop would wait for the spare
            syslogEndpoint?.close()
            adoption?.closeInChild()
            SessionHelper.waitAsSpare(channel: theirs, configuration: configuration, settings: programSettings,
                                      jail: jailName, sessionCgroups: sessionCgroups)
        }
        theirs.closeQuietly()
        spare = SpareHelper(pid: pid, channel: mine)
        children[pid] = .spare
    }

    /// Sends the connection to the spare, which is to become session `id`'s helper once it says
    /// it has it. False if there is no spare or the send failed (it died): the caller forks a
    /// helper instead. On true the connection is the pending hand-off's: the caller keeps it open.
    mutating func handToSpare(_ connection: FileDescriptor, id: Int, hostRoot: Bool) -> Bool {
        guard let current = spare else { return false }
        spare = nil
        let message = SpareHandOff(id: id, hostRoot: hostRoot).bytes
        let sent = (try? UnixSocket.send(current.channel, message, passing: [connection.rawValue])) == message.count
        guard sent else {
            current.channel.closeQuietly()
            // Not reaped yet (reapAll clears `spare` when it is), so the pid is still ours.
            killChild(current.pid)
            children[current.pid] = .dismissed
            return false
        }
        children[current.pid] = .sessionHelper(id: id, operator: false)
        handOff = PendingHandOff(spare: current, connection: connection, id: id, hostRoot: hostRoot,
                                 deadline: monotonicMilliseconds() + Self.handOffDeadlineMilliseconds)
        return true
    }

    /// What the spare of a pending hand-off has said so far, without waiting.
    enum HandOffAnswer {
        case acknowledged
        /// Its end closed or broke: it exited without taking the connection.
        case gone
        case nothing
    }

    static func answer(of spare: SpareHelper) -> HandOffAnswer {
        switch spare.channel.receiveWaitingByte() {
        case .byte(SpareHandOff.acknowledgement): .acknowledged
        case .nothing: .nothing
        // Any other byte is not the protocol's: a spare that sends it is as good as gone.
        case .byte, .ended: .gone
        }
    }

    /// The channel of the pending hand-off is readable: the acknowledgement, or the spare's end.
    mutating func handOffAnswered() {
        guard let pending = handOff else { return }
        switch Self.answer(of: pending.spare) {
        case .nothing: return
        case .acknowledged: handOffTaken(pending)
        case .gone: handOffFailed(pending, "exited before it took it")
        }
    }

    /// Called every loop turn: past the deadline, a spare that has not answered is killed.
    mutating func checkHandOffDeadline() {
        guard let pending = handOff, monotonicMilliseconds() >= pending.deadline else { return }
        switch Self.answer(of: pending.spare) {
        case .acknowledged: return handOffTaken(pending)
        case .gone: return handOffFailed(pending, "exited before it took it")
        case .nothing: break
        }
        killChild(pending.spare.pid)
        // An acknowledgement sent in the instant before the kill means the spare may have read
        // the client's first bytes: a helper forked now would wait for them forever. Without
        // one it read nothing (it acknowledges first), and after SIGKILL it never will.
        if case .acknowledged = Self.answer(of: pending.spare) {
            handOff = nil
            pending.spare.channel.closeQuietly()
            pending.connection.closeQuietly()
            log.warning("the spare session helper took session \(pending.id) only at its deadline and was killed: the session is lost")
            return
        }
        handOffFailed(pending, "did not take it within \(Self.handOffDeadlineMilliseconds) ms (stopped?): killed")
    }

    mutating func handOffTaken(_ pending: PendingHandOff) {
        handOff = nil
        pending.connection.closeQuietly()
        // Its channel now tells when the session's program runs (sessionStarted).
        startingSession = pending.spare
    }

    /// The spare did not take the connection: a helper is forked for the session instead.
    /// `reaped`: its pid is no longer ours to signal.
    mutating func handOffFailed(_ pending: PendingHandOff, _ what: String, reaped: Bool = false) {
        handOff = nil
        pending.spare.channel.closeQuietly()
        if reaped {
            children[pending.spare.pid] = nil
        } else {
            killChild(pending.spare.pid)
            children[pending.spare.pid] = .dismissed
        }
        log.warning("the spare session helper was handed session \(pending.id) and \(what); a helper is forked for it")
        if stopping {
            refuse(pending.connection, "the jail is stopping")
            return
        }
        forkHelper(pending.connection, id: pending.id, hostRoot: pending.hostRoot, operator: false)
        forkSpare()
    }

    /// The last spare's session has its program running, or its helper is gone: the next
    /// spare may come now.
    mutating func sessionStarted() {
        startingSession?.channel.closeQuietly()
        startingSession = nil
        forkSpare()
    }

    /// At stop, or when it died: a spare that holds no session just goes (its end of file
    /// ends it, SIGKILL in case it is stopped). A hand-off still pending is settled now.
    mutating func dismissSpare() {
        if let pending = handOff {
            if case .acknowledged = Self.answer(of: pending.spare) { handOffTaken(pending) } else {
                handOffFailed(pending, "had not taken it when the jail began to stop")
            }
        }
        startingSession?.channel.closeQuietly()
        startingSession = nil
        guard let current = spare else { return }
        spare = nil
        current.channel.closeQuietly()
        killChild(current.pid)
        children[current.pid] = .dismissed
    }
}
