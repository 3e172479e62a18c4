import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One `--boot` command and what `--boot-restart` needs to know of it; while it runs, its pid is
/// in init's children table as `.bootService(index:)`.
struct BootService {
    /// Its place among the `--boot` options (0-based), the `index=` of its log lines.
    let index: Int
    let command: String
    var startedAt: Int64 = 0
    /// When it starts again (monotonic ms), while a restart waits for its back-off.
    var restartAt: Int64?
    /// The back-off before the next restart (`Init.bootBackOff`).
    var delay: Int64 = Init.bootBackOff.first
    /// Its recent starts, for the start limit.
    var starts: [Int64] = []
    /// Restarts since the jail started, and the back-off the pending one waits.
    var restarts = 0
    var waiting: Int64 = 0
}

/// Boot commands: the job /etc/rc did in the Emulab jails, supervised by init.
///
/// `--boot-restart` as systemd's `Restart=`, with its back-off and start limit: a restart
/// waits 100 ms, doubling at each restart up to 30 s (systemd's RestartSec=100ms with
/// RestartSteps/RestartMaxDelaySec), back to 100 ms once a run lasted 60 s; more than 5 restarts
/// within 10 s (systemd's StartLimitBurst=5, StartLimitIntervalSec=10s) and init gives up on
/// that command, with one line. The wait is a deadline of init's poll loop (`loopTimeout`):
/// init never sleeps.
extension Init {
    static let bootBackOff = (first: Int64(100), max: Int64(30_000), resetAfter: Int64(60_000))
    static let bootStartLimit = (restarts: 5, withinMilliseconds: Int64(10_000))

    /// `--boot` commands, as the jail's user through its shell, in the jail's program cgroups;
    /// their stdout and stderr go to jaild's log.
    mutating func startBootCommands(output: FileDescriptor) {
        // rc-stop writes there too at stop, and restarts need it: then the pipe stays open.
        defer {
            if configuration.rcStop == nil && configuration.bootRestart == .no {
                output.closeQuietly()
                serviceOutput = nil
            }
        }
        bootServices = configuration.bootCommands.enumerated().map { BootService(index: $0.offset, command: $0.element) }
        for index in bootServices.indices { startBootService(index, output: output) }
    }

    mutating func startBootService(_ index: Int, output: FileDescriptor) {
        let command = bootServices[index].command
        let now = monotonicMilliseconds()
        bootServices[index].restartAt = nil
        bootServices[index].starts = bootServices[index].starts.filter { now - $0 < Self.bootStartLimit.withinMilliseconds } + [now]
        let devNull: FileDescriptor
        do { devNull = try openFile("/dev/null", O_RDONLY) } catch {
            log.error("boot command '\(command)' did not start: \(error)")
            return scheduleBootRestart(index, status: 127, now: now)
        }
        defer { devNull.closeQuietly() }
        let hello = Hello(mode: .stdio(passed: []), login: false, arguments: ["-c", command], environment: [])
        let request = SpawnRequest(command: SessionCommand(account: account, hello: hello, terminal: nil),
                                   account: account, stdio: [devNull.rawValue, output.rawValue, output.rawValue],
                                   controllingTerminal: false)
        do {
            let pid = try spawnProgram(request)
            bootServices[index].startedAt = now
            children[pid] = .bootService(index: index)
            log.info("boot command '\(command)' started (pid \(pid) in the jail)")
            log.info("\(Logfmt.line("boot start", [("jail", jailName), ("index", "\(index)"), ("pid", "\(pid)"), ("command", command)]))")
        } catch {
            log.error("boot command '\(command)' did not start: \(error)")
            scheduleBootRestart(index, status: 127, now: now)
        }
    }

    /// Boot command `index`'s process `pid` ended (reaped): logged, and restarted per `--boot-restart`.
    mutating func bootServiceEnded(_ index: Int, pid: pid_t, code: Int32) {
        let command = bootServices[index].command
        let stoppedByStop = Self.endedByTheStop(code: code, stopping: stopping)
        if stoppedByStop {
            // The stop ended it: that is how a service ends, not a failure.
            log.info("boot command '\(command)' stopped")
        } else if code == 0 {
            log.info("boot command '\(command)' exited with status 0")
        } else {
            log.error("boot command '\(command)' exited with status \(code)")
        }
        let now = monotonicMilliseconds()
        let ran = now - bootServices[index].startedAt
        let line = Logfmt.line("boot exit", [("jail", jailName), ("index", "\(index)"), ("pid", "\(pid)"), ("status", "\(code)"),
                                             ("ran", "\(ran / 1000).\(String(ran % 1000 / 100))s")])
        if code == 0 || stoppedByStop { log.info("\(line)") } else { log.warning("\(line)") }
        if ran >= Self.bootBackOff.resetAfter { bootServices[index].delay = Self.bootBackOff.first }
        scheduleBootRestart(index, status: code, now: now)
    }

    /// Whether a boot command's end is the stop's doing (its SIGTERM, or the SIGKILL after the
    /// grace): that is how a service ends, logged as stopped and never restarted.
    static func endedByTheStop(code: Int32, stopping: Bool) -> Bool {
        stopping && (code == 128 + SIGTERM || code == 128 + SIGKILL)
    }

    /// Sets the restart's deadline if the policy restarts this status and the start limit allows.
    mutating func scheduleBootRestart(_ index: Int, status: Int32, now: Int64) {
        guard !stopping, configuration.bootRestart.restarts(status: status), serviceOutput != nil else { return }
        let recent = bootServices[index].starts.filter { now - $0 < Self.bootStartLimit.withinMilliseconds }
        guard recent.count <= Self.bootStartLimit.restarts else {
            log.error("\(Logfmt.line("boot gave up", [("jail", jailName), ("index", "\(index)"), ("restarts", "\(recent.count - 1)"), ("within", "\(Self.bootStartLimit.withinMilliseconds / 1000)s"), ("command", bootServices[index].command)]))")
            return
        }
        let delay = bootServices[index].delay
        bootServices[index].restartAt = now + delay
        bootServices[index].waiting = delay
        bootServices[index].delay = min(delay * 2, Self.bootBackOff.max)
    }

    /// The boot commands whose back-off has passed start again (from the poll loop).
    mutating func restartDueBootServices() {
        guard !stopping, let output = serviceOutput else {
            for index in bootServices.indices { bootServices[index].restartAt = nil }
            return
        }
        let now = monotonicMilliseconds()
        for index in bootServices.indices {
            guard let due = bootServices[index].restartAt, due <= now else { continue }
            bootServices[index].restarts += 1
            log.info("\(Logfmt.line("boot restart", [("jail", jailName), ("index", "\(index)"), ("restart", "\(bootServices[index].restarts)"), ("after", "\(bootServices[index].waiting)ms")]))")
            startBootService(index, output: output)
            publishBootRestarts()
        }
    }

    /// The restart count where host root reads it and the jail cannot (as the session helpers'
    /// records: a sealed memfd of init's, which is not dumpable): `restarts=N` in a memfd named
    /// `jail-boot`, made anew at each restart. `jaild metrics` finds it in /proc/INIT/fd. A
    /// failure costs only the figure, said once in the log.
    mutating func publishBootRestarts() {
        let total = bootServices.reduce(0) { $0 + $1.restarts }
        let bytes = Array("restarts=\(total)\n".utf8)
        let record: FileDescriptor
        do { record = try sealedMemoryFile(named: Self.bootRecordName, bytes) } catch {
            if bootRestartRecord >= 0 { closeDescriptor(bootRestartRecord) }
            bootRestartRecord = -1
            log.warning("\(error): jail_boot_restarts_total is not published")
            return
        }
        if bootRestartRecord >= 0 { closeDescriptor(bootRestartRecord) }
        bootRestartRecord = record.rawValue
    }

    static let bootRecordName = "jail-boot"

    /// The nearest boot restart's deadline, for `loopTimeout`.
    var nextBootRestart: Int64? {
        stopping ? nil : bootServices.compactMap(\.restartAt).min()
    }
}
