import CJail
import JailIO
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The supervisor's loop once the jail runs: relay init's log lines, turn SIGTERM, SIGINT and
/// SIGHUP into a jail shutdown, and clean up when init is gone.
struct RunningJail {
    let supervisor: Supervisor
    let lock: PidFile
    let initProcess: InitHandle
    let signals: SignalDescriptor
    var logLines = LineSplitter()
    var bootLines = LineSplitter()
    /// Boot commands' output is the jail's to write: bounded per second (LogLines.swift).
    var bootBudget = LogBudget()
    var stopRequested = false
    var killDeadline: Int64 = 0
    /// OOM kills and the pids limit reached, logged as they happen (CgroupEvents.swift); the
    /// counters are read afresh by an adopting supervisor.
    var events: CgroupEvents?
    /// lxcfs's files in the jail, checked and bound again after lxcfs restarts (LxcfsWatch).
    var lxcfsWatch: LxcfsWatch?

    init(supervisor: Supervisor, lock: PidFile, init initProcess: InitHandle, signals: SignalDescriptor) {
        self.supervisor = supervisor
        self.lock = lock
        self.initProcess = initProcess
        self.signals = signals
        self.events = initProcess.cgroups.map(CgroupEvents.init)
        self.lxcfsWatch = supervisor.configuration.lxcfsInUse.map {
            LxcfsWatch(directory: $0, initPid: initProcess.pid, now: monotonicMilliseconds())
        }
    }

    /// Returns jaild's exit code: 0 after a requested stop, 1 if init died on its own.
    mutating func superviseUntilStopped() -> Int32 {
        var poller = Poller()
        var idlePages = IdlePages()
        var logOpen = true
        var bootOpen = true
        while true {
            poller.reset()
            let signalIndex = poller.add(signals.fd.rawValue, read: true)
            let logIndex = logOpen ? poller.add(initProcess.logPipe.rawValue, read: true) : -1
            reportDroppedBootLines()
            let bootIndex = bootOpen && bootBudget.mayRead ? poller.add(initProcess.bootOutput.rawValue, read: true) : -1
            var timeout: Int32 = bootOpen ? bootBudget.timeout(now: monotonicMilliseconds()) : -1
            if stopRequested {
                let untilKill = Int32(max(0, killDeadline - monotonicMilliseconds()))
                timeout = timeout < 0 ? untilKill : min(timeout, untilKill)
            }
            if let untilCheck = events?.timeout(now: monotonicMilliseconds()), untilCheck >= 0 {
                timeout = timeout < 0 ? untilCheck : min(timeout, untilCheck)
            }
            if let lxcfsWatch {
                let untilCheck = lxcfsWatch.timeout(now: monotonicMilliseconds())
                timeout = timeout < 0 ? untilCheck : min(timeout, untilCheck)
            }
            let pidfdIndex = initProcess.pidfd.map { poller.add($0.rawValue, read: true) } ?? -1
            let eventIndexes = events?.add(to: &poller) ?? []
            idlePages.wait(&poller, timeout: timeout)
            events?.check(jail: supervisor.configuration.name(account: supervisor.account), poller: poller,
                          indexes: eventIndexes, now: monotonicMilliseconds())
            lxcfsWatch?.check(jail: supervisor.configuration.name(account: supervisor.account), now: monotonicMilliseconds())
            if logIndex >= 0 && poller.readable(logIndex) { logOpen = relayLogs() }
            if bootIndex >= 0 && poller.readable(bootIndex) { bootOpen = relayBootOutput() }
            if pidfdIndex >= 0 && poller.readable(pidfdIndex) { return finish(initCode: nil) }
            if poller.readable(signalIndex), let pending = drainSignals() {
                for (signal, _) in pending {
                    if signal == SIGCHLD {
                        if let (_, code) = reapChild(initProcess.pid) { return finish(initCode: code) }
                    } else {
                        requestStop(signal)
                    }
                }
            }
            if stopRequested && monotonicMilliseconds() >= killDeadline {
                // init enforces the stop timeout itself; this is the backstop if it cannot.
                signalInit(SIGKILL)
            }
        }
    }

    mutating func requestStop(_ signal: Int32) {
        requestStop(because: "signal \(signal)")
    }

    mutating func requestStop(because reason: String) {
        guard !stopRequested else { return }
        stopRequested = true
        log.info("stopping on \(reason)")
        SystemdNotifier.fromEnvironment?.notify("STOPPING=1")
        // rc-stop may take one stop timeout before the TERM-then-KILL takes another.
        let timeouts = supervisor.configuration.rcStop == nil ? 1 : 2
        killDeadline = monotonicMilliseconds() + Int64(supervisor.configuration.stopTimeout * timeouts + 5) * 1000
        signalInit(SIGTERM)
    }

    /// A signal that cannot be sent (not ESRCH: init gone, whose end the loop sees next) is
    /// logged: the stop then rests on init's own timeout, or on the operator.
    func signalInit(_ signal: Int32) {
        do { try initProcess.deliver(signal) } catch { log.error("cannot signal the jail's init (pid \(initProcess.pid)): \(error)") }
    }

    /// The pending signals; a signalfd that cannot be read is logged, and polled again.
    func drainSignals() -> [(signal: Int32, sender: Int32)]? {
        do { return try signals.drain() } catch {
            log.error("cannot read the supervisor's signals: \(error)")
            return nil
        }
    }

    /// Logs each complete line from the jail. Returns false once the pipe is closed (or can
    /// no longer be read: said once, as a pipe init closed).
    mutating func relayLogs() -> Bool {
        let chunk: [UInt8]?
        do { chunk = try initProcess.logPipe.readChunk(max: 16384) } catch {
            log.error("cannot read the jail's log pipe: \(error)")
            return false
        }
        guard let chunk else { return true }
        if chunk.isEmpty { return false }
        absorbLog(chunk)
        return true
    }

    /// Boot commands' output: each line logged as it comes, escaped, cut at 4 KiB, at most
    /// `bootBudget.lines` a second and `bootBudget.bytes` read a second.
    mutating func relayBootOutput() -> Bool {
        let room = min(16384, bootBudget.bytes - bootBudget.bytesUsed)
        guard room > 0 else { return true }
        let chunk: [UInt8]?
        do { chunk = try initProcess.bootOutput.readChunk(max: room) } catch {
            log.error("cannot read the jail's boot output: \(error)")
            return false
        }
        guard let chunk else { return true }
        var budget = bootBudget
        defer { bootBudget = budget }
        let emit = { (line: [UInt8], cut: Bool) in
            if budget.admitLine() { log.info("boot: \(LineSplitter.escaped(line))\(cut ? " [cut at 4096 bytes]" : "")") }
        }
        if chunk.isEmpty {
            bootLines.finish(emit)
            return false
        }
        budget.consumed(bytes: chunk.count)
        bootLines.feed(chunk, emit)
        return true
    }

    /// Once a second at most: how many boot lines the rate limit dropped.
    mutating func reportDroppedBootLines() {
        let dropped = bootBudget.tick(now: monotonicMilliseconds())
        if dropped > 0 { log.warning("boot: \(dropped) lines of boot output dropped (more than \(bootBudget.lines) a second)") }
    }

    /// init's and the helpers' log lines (jaild's own code writes them; cut at 4 KiB all the same).
    mutating func absorbLog(_ chunk: [UInt8]) {
        logLines.feed(chunk) { line, _ in
            let (level, text) = JailLogHandler.parsePipeLine(LineSplitter.escaped(line)[...])
            JailLogHandler.emit(level: level, text)
        }
    }

    /// The lines init wrote before it exited, up to what is in the pipe now (its helpers may
    /// hold the write end a moment longer: never waited for).
    mutating func drainLogs() {
        do {
            try initProcess.logPipe.setNonBlocking(true)
            while let chunk = try initProcess.logPipe.readChunk(max: 16384), !chunk.isEmpty { absorbLog(chunk) }
        } catch {
            log.error("the jail's last log lines are lost: \(error)")
        }
    }

    /// `initCode` is nil for an adopted init, whose status only its parent could read.
    mutating func finish(initCode: Int32?) -> Int32 {
        drainLogs()
        initProcess.logPipe.closeQuietly()
        initProcess.bootOutput.closeQuietly()
        // The last kills (the one that ended the jail, say) before the cgroups go.
        events?.check(jail: supervisor.configuration.name(account: supervisor.account), poller: Poller(), indexes: [],
                      now: monotonicMilliseconds(), force: true)
        events?.close()
        let portsGivenBack = supervisor.tearDown(cgroups: initProcess.cgroups, lock: lock)
        if stopRequested {
            log.info("jail \(supervisor.account.uid):\(supervisor.account.gid) stopped")
            return portsGivenBack ? 0 : 1
        }
        guard let initCode else {
            log.error("the jail's init exited unexpectedly (status unknown: this jaild adopted it and is not its parent)")
            return 1
        }
        if initCode == Init.payloadPoweredOff {
            log.info("jail \(supervisor.account.uid):\(supervisor.account.gid) stopped: its system (--init) powered off")
            return 0
        }
        log.error("the jail's init exited unexpectedly (status \(initCode))")
        return 1
    }
}
