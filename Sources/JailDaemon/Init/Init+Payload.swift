import CJail
import JailIO
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What init knows of the payload (`--init`, Payload.swift): its state for `jaild list`, the
/// keeper's pipes, the payload's pid and a pidfd the session helpers enter it through.
struct PayloadState {
    enum Phase: String {
        case starting, running, stopping, stopped
    }

    var phase: Phase = .starting
    let keeper: pid_t
    let events: FileDescriptor
    let commands: FileDescriptor
    /// The payload's pid in the jail's PID namespace (0 until it started).
    var pid: pid_t = 0
    var bootStarted = monotonicMilliseconds()
    var keeperGone = false
    /// The events pipe until its end of file (the keeper and its boot gone).
    var eventsOpen = true
    /// The keeper's last `error` line, for the one line of a failed start.
    var lastError: String?
    /// How the last boot ended (`ended …`), for the same.
    var lastEnd: String?
    /// The start waits for READY=1 (awaitPayloadReady): an end now fails the start instead
    /// of stopping a running jail.
    var awaitingReady = false
    /// The sealed memfd `jail-payload` with the phase, for `jaild list` (-1: none yet).
    var record: Int32 = -1
}

/// Where a session helper enters the payload: descriptors of its namespaces (PayloadEntry.files),
/// kept by init and inherited by every helper it forks; empty without `--init` or while no
/// payload runs.
nonisolated(unsafe) var payloadNamespaces: [Int32] = []  // init's and its helpers' only: single-threaded

enum PayloadEntry {
    /// The namespaces a session joins, in the order it joins them (the user namespace first:
    /// it gives the capabilities the others ask for): all of the payload's but network and
    /// time (the host's).
    static let files = ["user", "mnt", "pid_for_children", "uts", "ipc", "cgroup"]
    static let types = [CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWCGROUP]

    /// In a session helper before anything of the session: into the payload's namespaces, so
    /// the user's program sees systemd's tree. Returns the one-line refusal, or nil.
    static func enter(configuration: JailConfiguration) -> String? {
        guard configuration.payload != nil else { return nil }
        guard payloadNamespaces.count == files.count else {
            return "the jail's system (--init) is not running: it is starting, rebooting or stopped; try again"
        }
        for (index, fd) in payloadNamespaces.enumerated() {
            do { try enterNamespace(fd, type: Int32(types[index]), name: files[index]) } catch {
                return "cannot enter the jail's system (--init): setns(\(files[index])): \(error.errno)"
            }
        }
        for fd in payloadNamespaces { closeDescriptor(fd) }
        payloadNamespaces = []
        // Joining a PID namespace places only our children in it, while the payload's /proc
        // shows only its own processes (our /proc/self would not resolve there): the session
        // goes on in a child, which is in it; this process waits and exits with its status,
        // as nsenter does. init knows this one; the child is the session's helper.
        let inner: pid_t
        do { inner = try forkProcess() } catch { return "cannot enter the jail's system (--init): fork: \(error.errno)" }
        if inner > 0 {
            // Our only child: a nil here would be a bug, and the session's 127 says it failed.
            _exit(waitForChild(inner).map(exitCode(ofStatus:)) ?? 127)
        }
        return nil
    }

    /// init: the namespaces of a new boot replace the last one's.
    static func replace(with fds: [Int32]) {
        for fd in payloadNamespaces { closeDescriptor(fd) }
        payloadNamespaces = fds.count == files.count ? fds : []
        if fds.count != files.count { for fd in fds { closeDescriptor(fd) } }
    }
}

extension Init {
    /// Waits (before "R") until the payload says READY=1, or `--init-timeout`; with
    /// `--init-required` a payload not ready fails the start.
    mutating func awaitPayloadReady() throws(JailError) {
        guard payload != nil else { return }
        payload?.awaitingReady = true
        defer { payload?.awaitingReady = false }
        let started = monotonicMilliseconds()
        let deadline = started + Int64(configuration.payloadTimeout) * 1000
        while payload?.phase == .starting {
            let remaining = deadline - monotonicMilliseconds()
            if remaining <= 0 {
                log.error("the payload (--init) was not ready within \(configuration.payloadTimeout) s")
                if configuration.payloadRequired {
                    throw .startFailed("--init \(configuration.payload?.first ?? "") was not ready within \(configuration.payloadTimeout) s (--init-required)")
                }
                return
            }
            var poller = Poller()
            let events = poller.add(payload?.events.rawValue ?? -1, read: true)
            poller.add(signals.fd.rawValue, read: true)
            do {
                _ = try poller.wait(timeout: Int32(min(remaining, 60_000)))
                if poller.readable(events) { readPayloadEvents() }
                for received in try signals.receive() where received.signal != SIGCHLD && received.killedFromOutside {
                    stopPending = true
                }
            } catch {
                // Neither can fail on descriptors init holds; if one did, the wait would spin:
                // the start fails instead, in one line.
                throw .system(error)
            }
            while let child = reapChild() {
                if child.pid == payload?.keeper { payload?.keeperGone = true }
            }
            if payload?.phase == .stopped || (payload?.keeperGone == true && payload?.phase == .starting) {
                readPayloadEvents()
                let reason = payload?.lastError ?? payload?.lastEnd.map { "it ended: \($0)" } ?? "see the log"
                throw .startFailed("the payload (--init \(configuration.payload?.joined(separator: " ") ?? "")) ended before it was ready: \(reason)")
            }
            if stopPending { return }
        }
        if let phase = payload?.phase, phase != .starting {
            log.info("\(Logfmt.line("payload ready", [("jail", jailName), ("ms", "\(monotonicMilliseconds() - started)")]))")
        }
    }

    /// The keeper's lines: `started PID` (with the namespaces), `ready`, `stopping`,
    /// `ended HOW`, `error REASON`; one per datagram.
    mutating func readPayloadEvents() {
        guard let events = payload?.events, payload?.eventsOpen == true else { return }
        while true {
            let message: (bytes: [UInt8], fds: [Int32])?
            do { message = try UnixSocket.receive(events, max: 4096, maxDescriptors: 8) } catch where error.errno == .badMessage {
                // More descriptors than an event carries: that one is dropped (and its descriptors
                // closed), the next are read.
                log.error("payload: an event with too many descriptors was dropped")
                continue
            } catch {
                // Nothing else fails on a seqpacket socket whose peer is alive: as its end of file.
                log.error("payload: the keeper's events cannot be read: \(error)")
                payload?.eventsOpen = false
                return
            }
            guard let message else { return }  // drained
            if message.bytes.isEmpty {
                payload?.eventsOpen = false
                return
            }
            let line = String(decoding: message.bytes.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            if line.hasPrefix("started ") {
                PayloadEntry.replace(with: message.fds)
            } else {
                for fd in message.fds { closeDescriptor(fd) }
            }
            handlePayloadEvent(line)
        }
    }

    mutating func handlePayloadEvent(_ line: String) {
        let word = line.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
        let rest = line.dropFirst(word.count + 1)
        switch word {
        case "started":
            payload?.pid = pid_t(rest) ?? 0
            payload?.bootStarted = monotonicMilliseconds()
            setPayloadPhase(stopping ? .stopping : .starting)
            // A spare forked before holds the last boot's entry: the next one gets this one.
            if spare != nil {
                dismissSpare()
                if !stopping { forkSpare() }
            }
            log.info("\(Logfmt.line("payload started", [("jail", jailName), ("pid", "\(payload?.pid ?? 0)")]))")
        case "ready":
            if !stopping { setPayloadPhase(.running) }
            let ms = monotonicMilliseconds() - (payload?.bootStarted ?? 0)
            log.info("\(Logfmt.line("payload running", [("jail", jailName), ("ms", "\(ms)")]))")
        case "stopping":
            setPayloadPhase(.stopping)
        case "ended":
            payload?.lastEnd = String(rest)
            PayloadEntry.replace(with: [])
            log.info("\(Logfmt.line("payload ended", [("jail", jailName), ("how", String(rest))]))")
            if rest == "reboot" && !stopping {
                setPayloadPhase(.starting)
            } else if payload?.awaitingReady == true {
                setPayloadPhase(.stopped)  // the start fails (awaitPayloadReady)
            } else {
                setPayloadPhase(.stopped)
                if stopping {
                    continueStopAfterPayload()
                } else {
                    // `systemctl poweroff` inside (or the payload's end): the jail stops, and
                    // jaild exits 0.
                    if rest == "poweroff" {
                        log.info("the payload powered off: stopping the jail")
                        exitCode = Self.payloadPoweredOff
                    } else {
                        log.error("the payload ended (\(rest)): stopping the jail")
                    }
                    beginStop()
                }
            }
        case "error":
            if payload?.lastError == nil { payload?.lastError = String(rest) }
            log.error("payload: \(rest)")
        default:
            log.warning("payload: unknown event '\(line)'")
        }
    }

    mutating func setPayloadPhase(_ phase: PayloadState.Phase) {
        guard payload != nil else { return }
        payload?.phase = phase
        // `jaild list` reads the phase from this memfd through /proc/INIT/fd (PayloadRecord).
        let bytes = Array("\(phase.rawValue)\n".utf8)
        let fd: FileDescriptor
        do { fd = try sealedMemoryFile(named: PayloadRecord.name, bytes) } catch {
            // `jaild list` then shows the phase before this one.
            log.warning("the payload's phase '\(phase.rawValue)' is not published: memfd: \(error.errno)")
            return
        }
        if let old = payload?.record, old >= 0 { closeDescriptor(old) }
        payload?.record = fd.rawValue
    }

    /// At stop: the payload halts first (its services' ExecStop run), within the stop timeout;
    /// returns false when there is no payload to wait for.
    mutating func haltPayload() -> Bool {
        guard let state = payload, !state.keeperGone, state.phase != .stopped else { return false }
        setPayloadPhase(.stopping)
        do { try state.commands.writeFully([UInt8(ascii: "h")]) } catch {
            // The boot is gone already (its pipe closed): its PID namespace ended with it.
            log.warning("the payload's boot did not take the halt: \(error)")
            return false
        }
        log.info("\(Logfmt.line("payload halt", [("jail", jailName), ("pid", "\(state.pid)")]))")
        return true
    }

    /// The payload did not halt within the stop timeout: killed (its whole PID namespace).
    mutating func killPayload() {
        guard let state = payload else { return }
        log.warning("the payload did not halt within \(configuration.stopTimeout) s: killing it")
        do { try state.commands.writeFully([UInt8(ascii: "k")]) } catch {
            // The boot is gone already (its pipe closed): its PID namespace ended with it.
            log.warning("the payload's boot did not take the kill: \(error)")
        }
        continueStopAfterPayload()
    }

    /// The keeper exited (reaped).
    mutating func payloadKeeperEnded(code: Int32) {
        payload?.keeperGone = true
        readPayloadEvents()
        if payload?.phase != .stopped {
            log.error("the payload's keeper exited with status \(code)")
            setPayloadPhase(.stopped)
            if stopping { continueStopAfterPayload() } else { beginStop() }
        }
    }
}

/// The phase of a running jail's payload as `jaild list` shows it: a sealed memfd of init's.
public enum PayloadRecord {
    public static let name = "jail-payload"

    /// The phase in `/proc/PID/fd` of the jail's init, or nil (no `--init`, or not readable).
    static func phase(initDirectory: ProcessDirectory) -> String? {
        // Unreadable is no figure: the column shows "-", as for a jail without `--init`.
        guard let bytes = try? initDirectory.memfdRecord(prefix: "/memfd:\(name) ", limit: 4096) else { return nil }
        return String(String(decoding: bytes, as: UTF8.self)[...].trimmingWhitespace())
    }
}

/// `--boot` commands, `--rc` and `--rc-stop` with `--init`: in the payload, as sessions are.
extension Init {
    /// Starts one of init's own programs (a boot command, the rc, the rc-stop). With `--init`
    /// it runs in the payload's namespaces, joined the session helpers' way (PayloadEntry.enter),
    /// so that it sees and drives the booted system (`systemctl`, systemd's /run, its PID 1).
    /// The pid returned is then a child of init's that joined them and exits with the
    /// program's status: init waits for, restarts and kills it as it did the program.
    func spawnProgram(_ request: SpawnRequest) throws(SpawnError) -> pid_t {
        guard configuration.payload != nil else { return try spawn(request, settings: programSettings) }
        // init is single-threaded: the child goes on as jaild (it spawns the program itself).
        let pid: pid_t
        do { pid = try forkProcess() } catch {
            throw SpawnError(step: Int32(CJ_STEP_FORK.rawValue), errno: error.errno.rawValue, request: request)
        }
        if pid > 0 { return pid }
        listener.closeQuietly()
        signals.fd.closeQuietly()
        serviceRelayStop?.closeQuietly()
        syslogEndpoint?.close()
        adoption?.closeInChild()
        if let refusal = PayloadEntry.enter(configuration: configuration) {
            log.error("\(refusal)")
            _exit(127)
        }
        // init kills the outer child (the rc's timeout: SIGKILL, which it cannot pass on); its
        // death is SIGHUP here (blocked, as in init), and the program is killed with it.
        // Without it an rc past its timeout would outlive the kill: the program is not started.
        do { try setParentDeathSignal(SIGHUP) } catch {
            log.error("prctl(PR_SET_PDEATHSIG) in the payload: \(error.errno)")
            _exit(127)
        }
        let program: pid_t
        do { program = try spawn(request, settings: programSettings) } catch {
            log.error("\(error)")
            _exit(127)
        }
        while true {
            if let status = exitedChildStatus(program) { _exit(JailSystem.exitCode(ofStatus: status)) }
            let signal: Int32
            do { signal = try waitForSignal([SIGCHLD, SIGHUP]) } catch {
                log.error("the program in the payload is not watched: \(error)")
                killChild(program)
                _exit(127)
            }
            if signal == SIGHUP {
                killChild(program)
                _exit(waitForChild(program).map(JailSystem.exitCode(ofStatus:)) ?? 127)
            }
        }
    }
}
