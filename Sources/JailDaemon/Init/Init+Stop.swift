import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Stopping the jail: TERM to everything, then KILL to all but the session helpers, which
/// report how their programs ended before they go.
extension Init {
    /// Stops taking sessions, runs `--rc-stop` (if any) and waits for it, at most the stop
    /// timeout; then SIGTERM to everything, SIGKILL to what is left after the stop timeout.
    mutating func beginStop() {
        guard !stopping else { return }
        stopping = true
        listener.closeQuietly()
        dismissSpare()
        // --init: rc-stop runs in the payload while it is up (it may ask systemd for things),
        // then the payload halts, so its services stop as on a shutdown.
        if let state = payload, !state.keeperGone, state.phase != .stopped, startRCStop() {
            rcStopBeforeHalt = true
            return
        }
        haltPayloadThenContinue()
    }

    mutating func haltPayloadThenContinue() {
        if haltPayload() { return }
        continueStopAfterPayload()
    }

    /// Starts `--rc-stop`; true if it runs (the stop waits for it, at most the stop timeout).
    mutating func startRCStop() -> Bool {
        guard let command = configuration.rcStop, let output = serviceOutput else { return false }
        do {
            let pid = try spawnAsRoot(command, output: output)
            rcStopPid = pid
            stopDeadline = monotonicMilliseconds() + Int64(configuration.stopTimeout) * 1000
            log.info("rc-stop started (pid \(pid) in the jail)")
            return true
        } catch {
            log.error("rc-stop did not start: \(error)")
            return false
        }
    }

    /// The rest of the stop once the payload (if any) is down: rc-stop, then TERM to the rest.
    mutating func continueStopAfterPayload() {
        payloadHalting = false
        guard !stopContinued else { return }
        stopContinued = true
        // With a payload, rc-stop ran before its halt (beginStop).
        if payload == nil && startRCStop() { return }
        terminateAll()
    }

    /// SIGTERM to everything in the jail; the stop timeout starts now.
    mutating func terminateAll() {
        terminating = true
        stopDeadline = monotonicMilliseconds() + Int64(configuration.stopTimeout) * 1000
        // kill(-1) from a PID namespace's init reaches every process in it except init.
        kill(-1, SIGTERM)
        kill(-1, SIGCONT)
        // The service relay is outside init's Landlock domain, so no signal of init's reaches it.
        serviceRelayStop?.closeQuietly()
        serviceRelayStop = nil
        reapAll()
        if !hasChildren() { _exit(exitCode) }
    }

    /// The stop deadline passed: rc-stop took too long, or processes outlived SIGTERM.
    mutating func stopDeadlinePassed() {
        if rcStopBeforeHalt {
            log.warning("rc-stop did not finish within \(configuration.stopTimeout)s: halting the payload anyway")
            if let pid = rcStopPid { kill(pid, SIGKILL) }
            rcStopBeforeHalt = false
            haltPayloadThenContinue()
            return
        }
        if payloadHalting {
            killPayload()
            return
        }
        if !terminating {
            log.warning("rc-stop did not finish within \(configuration.stopTimeout)s: stopping the jail anyway")
            terminateAll()
            return
        }
        if killedPrograms { killEverythingAndExit() }
        log.warning("processes still running after \(configuration.stopTimeout)s: killing them")
        killPrograms()
    }

    mutating func reapAll() {
        var helperEnded = false
        while let child = reapChild() {
            if child.pid == spare?.pid {
                // It died without a session (root inside killed it, say): the next client gets
                // a forked helper, and a new spare comes behind that one, not in a loop here.
                log.warning("the spare session helper exited with status \(child.code)")
                spare?.channel.closeQuietly()
                spare = nil
                continue
            }
            if let pending = handOff, child.pid == pending.spare.pid {
                // It died with a connection sent to it: taken (its acknowledgement is waiting)
                // or not, in which case a forked helper serves the session.
                if case .acknowledged = Self.answer(of: pending.spare) { handOffTaken(pending) } else {
                    handOffFailed(pending, "exited with status \(child.code) before it took it", reaped: true)
                    continue
                }
            }
            // A helper that did not exit 0 (a crash, SIGKILL) may have left its pty session
            // "logged in": its utmp entry carries its pid, so mark it dead (Utmp.swift).
            let sessionID = sessionIDs.removeValue(forKey: child.pid)
            if child.pid == startingSession?.pid {
                startingSession?.channel.closeQuietly()
                startingSession = nil
            }
            operatorHelpers.remove(child.pid)
            let wasHelper = helpers.remove(child.pid) != nil
            helperEnded = helperEnded || wasHelper
            if wasHelper && child.code != 0 {
                Utmp.logoutStale(pid: child.pid)
                log.warning("\(Logfmt.line("session end", [("jail", jailName), ("id", "\(sessionID ?? 0)"), ("status", "lost"), ("helper_status", "\(child.code)")]))")
            }
            if child.pid == syslogRelay && !stopping {
                log.error("the syslog relay exited with status \(child.code): the jail's /dev/log is not served")
            }
            if child.pid == serviceRelay && !stopping {
                log.error("the service relay exited with status \(child.code): the jail's --service sockets are not served")
            }
            if child.pid == rcStopPid {
                rcStopPid = nil
                if child.code == 0 {
                    log.info("rc-stop exited with status 0")
                } else {
                    log.error("rc-stop exited with status \(child.code)")
                }
            }
            if child.pid == payload?.keeper { payloadKeeperEnded(code: child.code) }
            bootCommandEnded(pid: child.pid, code: child.code)
        }
        // A session's end frees a slot: the spare is back once the jail is below its limit.
        if helperEnded { forkSpare() }
        // --init: rc-stop is done while the payload is up: now its halt.
        if rcStopBeforeHalt && rcStopPid == nil {
            rcStopBeforeHalt = false
            haltPayloadThenContinue()
        }
        // rc-stop is done: now the rest of the jail.
        if stopping && stopContinued && !terminating && rcStopPid == nil { terminateAll() }
    }

    /// SIGKILL to every process of the jail except the helpers, which then report 137 to their
    /// clients and exit. Everything is stopped first, so nothing forks while the list is read.
    mutating func killPrograms() {
        killedPrograms = true
        stopDeadline = monotonicMilliseconds() + Self.helperGraceMilliseconds
        kill(-1, SIGSTOP)
        for pid in jailProcesses() where pid != 1 && !helpers.contains(pid) { kill(pid, SIGKILL) }
        for pid in helpers { kill(pid, SIGCONT) }
        reapAll()
        if !hasChildren() { _exit(exitCode) }
    }

    static let helperGraceMilliseconds: Int64 = 2000

    /// The pids of this PID namespace, from the jail's own /proc.
    func jailProcesses() -> [pid_t] {
        listDirectory("/proc").compactMap { pid_t($0) }
    }

    /// Last resort when helpers do not finish in time: everything goes.
    func killEverythingAndExit() -> Never {
        kill(-1, SIGKILL)
        while wait(nil) > 0 || errno == EINTR {}
        _exit(exitCode)
    }
}
