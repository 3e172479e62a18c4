import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Stopping the jail: the steps are StopSequence's (a value, unit-tested); here init carries
/// them out, and reaps its children, whose ends are some of the stop's events.
extension Init {
    /// The host asked to stop (or the payload ended while the jail ran): from the next step on,
    /// the stop sequence leads. Called again during a stop, it changes nothing.
    mutating func beginStop() {
        advanceStop(.stopAsked(payloadUp: payload.map { !$0.keeperGone && $0.phase != .stopped } ?? false))
    }

    /// `--init`: the payload is down (it ended, or its keeper exited) while the jail stops.
    mutating func continueStopAfterPayload() {
        advanceStop(.payloadDown)
    }

    /// Feeds one event to the stop and carries out what it answers, in order; an action that
    /// could not be done answers with the event that says so. When the stop is over, the loop
    /// sees `stop.exitStatus` and init exits with it (Init.run).
    mutating func advanceStop(_ event: StopSequence.Event) {
        var events = [event]
        while !events.isEmpty {
            let next = events.removeFirst()
            for action in stop.handle(next, now: monotonicMilliseconds()) {
                if let answer = perform(action) { events.append(answer) }
            }
        }
    }

    /// One action of the stop; the event it answers when it could not be done.
    mutating func perform(_ action: StopSequence.Action) -> StopSequence.Event? {
        switch action {
        case .stopServing:
            listener.closeQuietly()
            dismissSpare()
        case .startRCStop:
            if !startRCStop() { return .rcStopDidNotStart }
        case .haltPayload:
            if !haltPayload() { return .payloadHaltNotSent }
        case .killRCStop:
            if let pid = children.pid(of: .rcStop) { killChild(pid) }
        case .killPayload:
            killPayload()
        case .logWarning(let notice):
            log.warning("\(notice.text(stopTimeoutSeconds: configuration.stopTimeout))")
        case .terminateAll:
            terminateAll()
        case .killPrograms:
            killPrograms()
        case .killEverything:
            signalEveryProcessButInit(SIGKILL)
            reapEveryChild()
        case .exitNow:
            // Nothing to do here: the loop returns `stop.exitStatus` at the top of its next turn.
            break
        }
        return nil
    }

    /// Starts `--rc-stop`; true if it runs (the stop waits for it, at most the stop timeout).
    mutating func startRCStop() -> Bool {
        guard let command = configuration.rcStop, let output = serviceOutput else { return false }
        do {
            let pid = try spawnAsRoot(command, output: output)
            children[pid] = .rcStop
            log.info("rc-stop started (pid \(pid) in the jail)")
            return true
        } catch {
            log.error("rc-stop did not start: \(error)")
            return false
        }
    }

    /// SIGTERM to everything in the jail (the stop timeout runs from now).
    mutating func terminateAll() {
        signalEveryProcessButInit(SIGTERM)
        signalEveryProcessButInit(SIGCONT)
        // The service relay is outside init's Landlock domain, so no signal of init's reaches it.
        serviceRelayStop?.closeQuietly()
        serviceRelayStop = nil
        reapAllThenExitIfNoneLeft()
    }

    /// SIGKILL to every process of the jail except the helpers, which then report 137 to their
    /// clients and exit. Everything is stopped first, so nothing forks while the list is read.
    mutating func killPrograms() {
        signalEveryProcessButInit(SIGSTOP)
        // A process that exited meanwhile (ESRCH) needs nothing; one out of init's reach
        // (EPERM: the service relay, outside init's Landlock domain) ends by its own stop pipe.
        for pid in jailProcesses() where pid != 1 && !children.isHelper(pid) { signalIfReachable(SIGKILL, to: pid) }
        for pid in children.helpers { signalIfReachable(SIGCONT, to: pid) }
        reapAllThenExitIfNoneLeft()
    }

    /// Reaps; during a stop, no child left ends it.
    mutating func reapAllThenExitIfNoneLeft() {
        reapAll()
        if stopping && !hasChildProcesses() { advanceStop(.noChildrenLeft) }
    }

    /// Reaps every child that has exited; what each end means depends on the child's kind.
    mutating func reapAll() {
        var helperEnded = false
        while let child = reapChild() {
            if let pending = handOff, child.pid == pending.spare.pid {
                // It died with a connection sent to it: taken (its acknowledgement is waiting)
                // or not, in which case a forked helper serves the session.
                if case .acknowledged = Self.answer(of: pending.spare) { handOffTaken(pending) } else {
                    handOffFailed(pending, "exited with status \(child.code) before it took it", reaped: true)
                    continue
                }
            }
            switch children.remove(child.pid) {
            case .spare:
                // It died without a session (root inside killed it, say): the next client gets
                // a forked helper, and a new spare comes behind that one, not in a loop here.
                log.warning("the spare session helper exited with status \(child.code)")
                spare?.channel.closeQuietly()
                spare = nil
            case .sessionHelper(let id, _):
                helperEnded = true
                if child.pid == startingSession?.pid {
                    startingSession?.channel.closeQuietly()
                    startingSession = nil
                }
                // A helper that did not exit 0 (a crash, SIGKILL) may have left its pty session
                // "logged in": its utmp entry carries its pid, so mark it dead (Utmp.swift).
                if child.code != 0 {
                    Utmp.logoutStale(pid: child.pid)
                    log.warning("\(Logfmt.line("session end", [("jail", jailName), ("id", "\(id)"), ("status", "lost"), ("helper_status", "\(child.code)")]))")
                }
            case .syslogRelay:
                if !stopping { log.error("the syslog relay exited with status \(child.code): the jail's /dev/log is not served") }
            case .serviceRelay:
                if !stopping { log.error("the service relay exited with status \(child.code): the jail's --service sockets are not served") }
            case .rcStop:
                if child.code == 0 {
                    log.info("rc-stop exited with status 0")
                } else {
                    log.error("rc-stop exited with status \(child.code)")
                }
                advanceStop(.rcStopEnded)
            case .payloadKeeper:
                payloadKeeperEnded(code: child.code)
            case .bootService(let index):
                bootServiceEnded(index, pid: child.pid, code: child.code)
            case .dismissed, nil:
                break
            }
        }
        // A session's end frees a slot: the spare is back once the jail is below its limit.
        if helperEnded { forkSpare() }
    }

    /// The pids of this PID namespace, from the jail's own /proc.
    func jailProcesses() -> [pid_t] {
        listDirectory("/proc").compactMap { pid_t($0) }
    }
}
