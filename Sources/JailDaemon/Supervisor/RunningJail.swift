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
    let initPid: pid_t
    let signals: SignalDescriptor
    let logPipe: FileDescriptor
    let bootOutput: FileDescriptor
    let cgroups: JailCgroups?
    var logBuffer: [UInt8] = []
    var bootBuffer: [UInt8] = []
    var stopRequested = false
    var killDeadline: Int64 = 0
    /// An adopted init is not this supervisor's child: its pidfd says when it has exited, and
    /// signals go through it (never to a later process with the same pid).
    let initPidfd: Int32?

    init(supervisor: Supervisor, lock: PidFile, initPid: pid_t, signals: SignalDescriptor, logPipe: FileDescriptor,
         bootOutput: FileDescriptor, cgroups: JailCgroups?, initPidfd: Int32?) {
        self.initPidfd = initPidfd
        self.supervisor = supervisor
        self.lock = lock
        self.initPid = initPid
        self.signals = signals
        self.logPipe = logPipe
        self.bootOutput = bootOutput
        self.cgroups = cgroups
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
            let logIndex = logOpen ? poller.add(logPipe.rawValue, read: true) : -1
            let bootIndex = bootOpen ? poller.add(bootOutput.rawValue, read: true) : -1
            let pidfdIndex = initPidfd.map { poller.add($0, read: true) } ?? -1
            var timeout: Int32 = -1
            if stopRequested { timeout = Int32(max(0, killDeadline - monotonicMilliseconds())) }
            idlePages.afterWait(woke: (try? poller.wait(timeout: idlePages.timeout(timeout))) ?? true)
            if logIndex >= 0 && poller.readable(logIndex) { logOpen = relayLogs() }
            if bootIndex >= 0 && poller.readable(bootIndex) { bootOpen = relayBootOutput() }
            if pidfdIndex >= 0 && poller.readable(pidfdIndex) { return finish(initCode: nil) }
            if poller.readable(signalIndex), let pending = try? signals.drain() {
                for (signal, _) in pending {
                    if signal == SIGCHLD {
                        if let (_, code) = reapChild(initPid) { return finish(initCode: code) }
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
        guard !stopRequested else { return }
        stopRequested = true
        log.info("stopping on signal \(signal)")
        SystemdNotifier.fromEnvironment?.send("STOPPING=1")
        killDeadline = monotonicMilliseconds() + Int64(supervisor.configuration.stopTimeout + 5) * 1000
        signalInit(SIGTERM)
    }

    func signalInit(_ signal: Int32) {
        if let initPidfd { _ = cj_pidfd_send_signal(initPidfd, signal) } else { kill(initPid, signal) }
    }

    /// Logs each complete line from the jail. Returns false once the pipe is closed.
    mutating func relayLogs() -> Bool {
        guard let chunk = try? logPipe.readChunk(max: 16384) else { return true }
        if chunk.isEmpty { return false }
        absorbLog(chunk)
        return true
    }

    /// Boot commands' output: each line logged as it comes.
    mutating func relayBootOutput() -> Bool {
        guard let chunk = try? bootOutput.readChunk(max: 16384) else { return true }
        if chunk.isEmpty {
            if !bootBuffer.isEmpty { log.info("boot: \(String(decoding: bootBuffer, as: UTF8.self))") }
            bootBuffer.removeAll()
            return false
        }
        bootBuffer += chunk
        while let newline = bootBuffer.firstIndex(of: 10) {
            log.info("boot: \(String(decoding: bootBuffer[..<newline], as: UTF8.self))")
            bootBuffer.removeSubrange(...newline)
        }
        return true
    }

    mutating func absorbLog(_ chunk: [UInt8]) {
        logBuffer += chunk
        while let newline = logBuffer.firstIndex(of: 10) {
            let line = String(decoding: logBuffer[..<newline], as: UTF8.self)
            logBuffer.removeSubrange(...newline)
            let (level, text) = JailLogHandler.parsePipeLine(line[...])
            JailLogHandler.emit(level: level, text)
        }
    }

    /// `initCode` is nil for an adopted init, whose status only its parent could read.
    mutating func finish(initCode: Int32?) -> Int32 {
        try? logPipe.setNonBlocking(true)
        while let chunk = try? logPipe.readChunk(max: 16384), !chunk.isEmpty { absorbLog(chunk) }
        logPipe.closeQuietly()
        bootOutput.closeQuietly()
        unlink(supervisor.location.socketPath)
        unlink(supervisor.controlPath)
        PortFilter.detach(from: cgroups)
        cgroups?.remove()
        JailState.remove(name: supervisor.cgroupName)
        lock.release()
        if stopRequested {
            log.info("jail \(supervisor.account.uid):\(supervisor.account.gid) stopped")
            return 0
        }
        guard let initCode else {
            log.error("the jail's init exited unexpectedly (status unknown: this jaild adopted it and is not its parent)")
            return 1
        }
        log.error("the jail's init exited unexpectedly (status \(initCode))")
        return 1
    }
}
