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
        for (fd, type) in zip(payloadNamespaces, types) where cj_setns(fd, Int32(type)) != 0 {
            return "cannot enter the jail's system (--init): setns(\(files[types.firstIndex(of: type) ?? 0])): \(Errno(rawValue: errno))"
        }
        for fd in payloadNamespaces { close(fd) }
        payloadNamespaces = []
        // Joining a PID namespace places only our children in it, while the payload's /proc
        // shows only its own processes (our /proc/self would not resolve there): the session
        // goes on in a child, which is in it; this process waits and exits with its status,
        // as nsenter does. init knows this one; the child is the session's helper.
        let inner = fork()
        if inner < 0 { return "cannot enter the jail's system (--init): fork: \(Errno(rawValue: errno))" }
        if inner > 0 {
            var status: Int32 = 0
            while waitpid(inner, &status, 0) < 0 && errno == EINTR {}
            _exit(cj_status_to_code(status))
        }
        return nil
    }

    /// init: the namespaces of a new boot replace the last one's.
    static func replace(with fds: [Int32]) {
        for fd in payloadNamespaces { close(fd) }
        payloadNamespaces = fds.count == files.count ? fds : []
        if fds.count != files.count { for fd in fds { close(fd) } }
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
            var entries = [pollfd(fd: payload?.events.rawValue ?? -1, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: signals.fd.rawValue, events: Int16(POLLIN), revents: 0)]
            _ = poll(&entries, 2, Int32(min(remaining, 60_000)))
            if entries[0].revents != 0 { readPayloadEvents() }
            for received in (try? signals.receive()) ?? [] where received.signal != SIGCHLD && received.killedFromOutside {
                stopPending = true
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
        guard let events = payload?.events.rawValue, payload?.eventsOpen == true else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [Int32](repeating: -1, count: 8)
            var count: Int32 = 0
            let n = buffer.withUnsafeMutableBytes { bytes in
                fds.withUnsafeMutableBufferPointer { cj_recv_with_fds(events, bytes.baseAddress, bytes.count, $0.baseAddress, 8, &count) }
            }
            if n == 0 { payload?.eventsOpen = false }
            if n <= 0 { return }
            let received = Array(fds.prefix(Int(max(0, count))))
            let line = String(decoding: buffer[0..<n].prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            if line.hasPrefix("started ") {
                PayloadEntry.replace(with: received)
            } else {
                for fd in received { close(fd) }
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
        let fd = cj_sealed_memfd(PayloadRecord.name, bytes, bytes.count)
        if fd >= 0 {
            if let old = payload?.record, old >= 0 { close(old) }
            payload?.record = fd
        }
    }

    /// At stop: the payload halts first (its services' ExecStop run), within the stop timeout;
    /// returns false when there is no payload to wait for.
    mutating func haltPayload() -> Bool {
        guard let state = payload, !state.keeperGone, state.phase != .stopped else { return false }
        setPayloadPhase(.stopping)
        stopDeadline = monotonicMilliseconds() + Int64(configuration.stopTimeout) * 1000
        payloadHalting = true
        var halt = UInt8(ascii: "h")
        if write(state.commands.rawValue, &halt, 1) != 1 {
            payloadHalting = false
            return false
        }
        log.info("\(Logfmt.line("payload halt", [("jail", jailName), ("pid", "\(state.pid)")]))")
        return true
    }

    /// The payload did not halt within the stop timeout: killed (its whole PID namespace).
    mutating func killPayload() {
        guard let state = payload else { return }
        log.warning("the payload did not halt within \(configuration.stopTimeout) s: killing it")
        var kill = UInt8(ascii: "k")
        if write(state.commands.rawValue, &kill, 1) != 1 {
            // The boot is gone already (its pipe closed): its PID namespace ended with it.
            log.warning("the payload's boot did not take the kill: \(Errno(rawValue: errno))")
        }
        payloadHalting = false
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
    public static func phase(initPid: Int32) -> String? {
        let directory = "/proc/\(initPid)/fd"
        for entry in listDirectory(directory) {
            var buffer = [CChar](repeating: 0, count: 256)
            let n = readlink("\(directory)/\(entry)", &buffer, buffer.count - 1)
            guard n > 0 else { continue }
            let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard target.hasPrefix("/memfd:\(name) ") else { continue }
            guard let text = try? readText("\(directory)/\(entry)") else { continue }
            return String(text[...].trimmingWhitespace())
        }
        return nil
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
        let pid = fork()
        if pid < 0 { throw SpawnError(step: Int32(CJ_STEP_FORK.rawValue), errno: errno, request: request) }
        if pid > 0 { return pid }
        listener.closeQuietly()
        signals.fd.closeQuietly()
        serviceRelayStop?.closeQuietly()
        adoption?.closeInChild()
        if let refusal = PayloadEntry.enter(configuration: configuration) {
            log.error("\(refusal)")
            _exit(127)
        }
        // init kills the outer child (the rc's timeout: SIGKILL, which it cannot pass on); its
        // death is SIGHUP here (blocked, as in init), and the program is killed with it.
        // Without it an rc past its timeout would outlive the kill: the program is not started.
        if cj_set_parent_death_signal(SIGHUP) != 0 {
            log.error("prctl(PR_SET_PDEATHSIG) in the payload: \(Errno(rawValue: errno))")
            _exit(127)
        }
        let program: pid_t
        do { program = try spawn(request, settings: programSettings) } catch {
            log.error("\(error)")
            _exit(127)
        }
        var waited = sigset_t()
        sigemptyset(&waited)
        sigaddset(&waited, SIGCHLD)
        sigaddset(&waited, SIGHUP)
        while true {
            var status: Int32 = 0
            if waitpid(program, &status, WNOHANG) == program { _exit(cj_status_to_code(status)) }
            if sigwaitinfo(&waited, nil) == SIGHUP {
                kill(program, SIGKILL)
                while waitpid(program, &status, 0) < 0 && errno == EINTR {}
                _exit(cj_status_to_code(status))
            }
        }
    }
}
