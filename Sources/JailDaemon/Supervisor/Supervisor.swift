import CJail
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The host side of a jail: "jaild: supervisor [UID:GID]".
///
/// It owns the pid file (locked, so a second jaild for the same socket is refused), binds the
/// socket, clones the jail's first process into new PID, mount, UTS and IPC namespaces (never
/// a network namespace), logs what the jail reports, turns SIGTERM into a jail shutdown and,
/// when init is gone, removes the socket and the pid file. It holds no jail fd after the clone.
///
/// The jail does not depend on it: if it dies, init runs on, and the next jaild started for
/// the same socket adopts the jail instead of starting another (Supervisor+Adopt.swift).
public struct Supervisor {
    public let configuration: JailConfiguration
    public let account: Account
    public let location: SocketLocation
    /// Made by `forAdoption`: the account is the state file's ids, the jail's files unread.
    var accountFromState = false

    public init(configuration: JailConfiguration, account: Account) {
        self.configuration = configuration
        self.account = account
        location = Supervisor.location(configuration, account: account)
    }

    /// The supervisor for a running jail whose supervisor died, found from the state files
    /// alone, or nil (then jaild preflights and starts afresh). Adoption reads nothing of the
    /// jail's tree: its files are the jail's, and a FIFO at its /etc/passwd would hang host
    /// root while the jail runs unsupervised. Only the account's ids are known this way, which
    /// is all adoption needs (its name, home and shell matter to a fresh init only).
    public static func forAdoption(_ configuration: JailConfiguration) -> Supervisor? {
        guard !configuration.rootless else { return nil }
        // With the gid known (every config `jaild create` writes), the state file's name is
        // known too: one file read instead of every jail's.
        let entries: [(name: String, state: JailState)]
        if let gid = configuration.gid {
            let name = cgroupName(prefix: configuration.socketPrefix, uid: configuration.uid, gid: gid)
            entries = JailState.load(name: name).map { [(name, $0)] } ?? []
        } else {
            entries = JailState.named()
        }
        let candidates = entries.compactMap { entry -> Supervisor? in
            let state = entry.state
            guard state.uid == configuration.uid, configuration.gid.map({ $0 == state.gid }) ?? true else { return nil }
            let account = Account(name: configuration.userName ?? "", uid: state.uid, gid: state.gid, groups: [state.gid],
                                  home: "/", shell: "/bin/sh")
            var supervisor = Supervisor(configuration: configuration, account: account)
            supervisor.accountFromState = true
            let same = entry.name == supervisor.cgroupName && state.socket == supervisor.location.socketPath
            return same && state.initIsAlive ? supervisor : nil
        }
        // Two live jails of this uid under different gids: the jail's passwd decides (preflight).
        return candidates.count == 1 ? candidates[0] : nil
    }

    /// Where the socket goes. Its name carries the host's uid and gid (the client looks for
    /// its own), which rootless differ from the ids inside with --map-root.
    public static func location(_ configuration: JailConfiguration, account: Account) -> SocketLocation {
        guard configuration.rootless else {
            return SocketLocation(prefix: configuration.socketPrefix, uid: account.uid, gid: account.gid)
        }
        let home = environmentValue("HOME") ?? PasswdEntry.hostHome(ofUID: getuid())
        let environment = ["XDG_RUNTIME_DIR": environmentValue("XDG_RUNTIME_DIR") ?? "", "HOME": home ?? ""]
        let prefix = configuration.socketPrefix
            ?? SocketLocation.userDirectory(uid: getuid(), environment: environment) + "/jaild"
        return SocketLocation(prefix: prefix, uid: getuid(), gid: getgid())
    }

    /// Starts the jail. In the foreground it returns the exit code once the jail has stopped;
    /// otherwise the first process returns 0 as soon as the socket accepts sessions (the
    /// daemon goes on alone), or throws the reason the start failed.
    public func run() throws(JailError) -> Int32 {
        // A write to init's pipes after init died must fail with EPIPE, not kill jaild.
        _ = cj_ignore_signal(SIGPIPE)
        if configuration.foreground {
            var started = try start(report: nil)
            return started.superviseUntilStopped()
        }
        let logFile = logFileWithoutSyslog()
        let report = try JailError.wrap { () throws(SystemError) in try Pipe.make() }
        let pid = fork()
        if pid < 0 { throw .system(.last("fork")) }
        if pid == 0 {
            report.read.closeQuietly()
            daemonize(logFile: logFile)
            do {
                var started = try start(report: report.write)
                _exit(started.superviseUntilStopped())
            } catch {
                Readiness.failed(error.description).send(on: report.write)
                _exit(1)
            }
        }
        report.write.closeQuietly()
        return try awaitReadiness(report.read, daemon: pid)
    }

    /// The daemon's own session, no terminal, logs to syslog (or to its file, without one).
    func daemonize(logFile: LogFile?) {
        setsid()
        do {
            let devNull = try openFile("/dev/null", O_RDWR)
            for stream: Int32 in 0...2 { try devNull.duplicate(onto: stream) }
            if devNull.rawValue > 2 { devNull.closeQuietly() }
        } catch {
            // The terminal stays the daemon's: its lines still go to the log below, not lost.
            log.warning("the daemon keeps its terminal's standard streams: \(error)")
        }
        if let logFile {
            currentLogSink = .file(logFile)
            log.info("syslog is unreachable (nothing listens on /dev/log): logging to \(logFile.path)")
        } else {
            currentLogSink = .syslog
            cj_openlog("jaild")
        }
    }

    /// The daemon's log file when nobody listens on /dev/log, opened before the fork and
    /// announced once, when the file is new, to an operator at a terminal (scripts and units
    /// get no extra line on stderr; the file itself always says why it exists).
    func logFileWithoutSyslog() -> LogFile? {
        guard !LogFile.syslogIsReachable() else { return nil }
        guard let directory = logDirectory else { return nil }
        let file = LogFile(name: cgroupName, directory: directory)
        let atTerminal = FileDescriptor.standardError.isTerminal
        do { try file.open() } catch {
            if atTerminal {
                JailLogHandler.emitToTerminal("warning: syslog is unreachable and \(file.path) cannot be opened (\(error)): "
                    + "the daemon's log is lost")
            }
            return nil
        }
        if file.created && atTerminal {
            JailLogHandler.emitToTerminal("syslog is unreachable (nothing listens on /dev/log): logging to \(file.path)")
        }
        return file
    }

    /// /var/log/jail for root; a rootless jail's user keeps its own, in its state directory.
    var logDirectory: String? {
        guard configuration.rootless else { return LogFile.directory }
        if let state = environmentValue("XDG_STATE_HOME"), state.hasPrefix("/") { return state + "/jail" }
        guard let home = environmentValue("HOME"), home.hasPrefix("/") else { return nil }
        return home + "/.local/state/jail"
    }

    /// Waits for the daemon's word: "R" when ready, "E<reason>" when it failed.
    func awaitReadiness(_ report: FileDescriptor, daemon: pid_t) throws(JailError) -> Int32 {
        let readiness = Readiness.receive(from: report)
        if case .ready = readiness { return 0 }
        let status = waitForChild(daemon)
        if case .failed(let reason) = readiness { throw .startFailed(reason) }
        throw .startFailed("the daemon exited before the jail was ready (status \(status.map(exitCode(ofStatus:)) ?? -1))")
    }

    /// Everything up to a jail whose socket accepts sessions.
    func start(report: FileDescriptor?) throws(JailError) -> RunningJail {
        try prepareDirectory()
        let lock = try PidFile.acquire(location)
        if let adopted = try adoptRunningJail(lock: lock, report: report) { return adopted }
        if accountFromState {
            // The init this jaild came to adopt exited meanwhile: a fresh start, preflighted as any.
            lock.release()
            let account = try Preflight.check(configuration)
            return try Supervisor(configuration: configuration, account: account).start(report: report)
        }
        let listener: FileDescriptor
        var control: FileDescriptor?
        do {
            listener = try bindSocket()
            if !configuration.rootless { control = try bindControlSocket() }
        } catch {
            lock.release()
            throw error
        }
        var cgroups: JailCgroups?
        var range: UInt32?
        let signals: SignalDescriptor
        let started: (handle: InitHandle, rcStatus: Int32?, traffic: UInt32?)
        do {
            // With limits init inherits descriptors of its cgroups' procs files, so they exist
            // before the clone; without, they are made while init mounts its file system.
            if cgroupsBeforeClone {
                cgroups = try makeCgroups()
                try PortFilter.attach(configuration, jail: cgroupName, socket: location.socketPath, to: cgroups)  // every jail: the post-bind check
            } else if !configuration.rootless {
                // For a clone into them (Supervisor+BirthCgroup.swift); the filter while init mounts.
                cgroups = try makeCgroups()
            }
            signals = try JailError.wrap { () throws(SystemError) in
                try SignalDescriptor([SIGTERM, SIGINT, SIGHUP, SIGCHLD])
            }
            range = try allocateRange()
            started = try cloneInit(listener: listener, control: control, cgroups: &cgroups, range: range)
        } catch {
            listener.closeQuietly()
            control?.closeQuietly()
            tearDown(cgroups: cgroups, lock: lock)
            throw error
        }
        listener.closeQuietly()
        control?.closeQuietly()
        cj_set_proctitle("jaild: supervisor [\(account.uid):\(account.gid)]")
        var state = JailState(socket: location.socketPath, pidFile: location.pidPath, uid: account.uid, gid: account.gid,
                              root: configuration.root ?? "/", supervisor: getpid(), initPid: started.handle.pid,
                              started: wallClockSeconds(), cgroup: cgroups?.unifiedDirectory ?? "",
                              ports: configuration.ports?.description ?? "", rcStatus: started.rcStatus,
                              userRange: range,
                              name: configuration.name(account: account))
        state.services = configuration.services.map { "\($0.jailPath)=\($0.hostPath)" }
        if control != nil {
            state.identity = ProcessIdentity.of("\(started.handle.pid)")
            state.control = controlPath
            state.cgroups = cgroups?.directories ?? []
        }
        state.forwardAgent = configuration.forwardAgent
        state.bootCommands = configuration.bootCommands.count
        state.forwardX11 = configuration.forwardX11
        state.traffic = started.traffic
        state.addresses = configuration.addresses.map(\.description)
        state.addressShared = configuration.addressShared
        state.loopback = JailAddresses.chosenLoopback(configuration, name: cgroupName)?.description ?? ""
        // A rootless jail has no state (/run/jail is root's): no other jaild finds it, and its
        // init dies with this supervisor.
        do { if !configuration.rootless { try state.save(as: cgroupName) } } catch {
            // A jail no verb can find is not started: it is stopped as at a SIGTERM, and the
            // start fails with the reason.
            var jail = RunningJail(supervisor: self, lock: lock, init: started.handle, signals: signals)
            jail.requestStop(because: "a failed save of its state")
            _ = jail.superviseUntilStopped()
            throw .state(error)
        }
        if let report {
            Readiness.ready("").send(on: report)
            report.closeQuietly()
        }
        SystemdNotifier.fromEnvironment?.notify("READY=1\nMAINPID=\(getpid())")
        log.info("jail \(account.uid):\(account.gid) started on \(location.socketPath), init is pid \(started.handle.pid)")
        if configuration.root != nil, let warning = LxcfsViews.choose(configuration.views, directory: configuration.lxcfsDirectory).warning,
           configuration.lxcfsInUse == nil {
            log.warning("\(warning.dropFirst("warning: ".count))")
        }
        return RunningJail(supervisor: self, lock: lock, init: started.handle, signals: signals)
    }

    /// What a jail holds on the host, given back in one order whether its start failed or it
    /// stopped: the sockets, the port filter and the ports, the cgroups, the state file, and
    /// last the pid file's lock (once it is free, a new jaild may start on this socket).
    /// False when the ports could not be given back (logged; the exit status says it).
    @discardableResult
    func tearDown(cgroups: JailCgroups?, lock: PidFile) -> Bool {
        for socket in [location.socketPath, controlPath] {
            // Left behind, it is removed by the next start (which holds the pid file's lock).
            do { try removeFile(socket) } catch { log.warning("cannot remove the jail's socket: \(error)") }
        }
        let portsGivenBack = PortFilter.detach(from: cgroups)
        cgroups?.remove()
        JailState.remove(name: cgroupName)
        lock.release()
        return portsGivenBack
    }

    /// The jail's host id range (root's user namespace only), the same at every start.
    func allocateRange() throws(JailError) -> UInt32? {
        guard configuration.mapsRange else { return nil }
        return try UserRangeStore().range(for: cgroupName, socket: location.socketPath, pool: configuration.userNamespacePool,
                                          ids: [account.uid, account.gid])
    }

    /// One name per socket: `jail-UID-GID`, plus a hash of the prefix when it is not the default.
    var cgroupName: String { Self.cgroupName(prefix: configuration.socketPrefix, uid: account.uid, gid: account.gid) }

    /// The same from the socket's parts (`jaild destroy` finds the jail's id range by it).
    static func cgroupName(prefix: String?, uid: UInt32, gid: UInt32) -> String {
        guard let prefix else { return "jail-\(uid)-\(gid)" }
        var hash: UInt32 = 2_166_136_261
        for byte in prefix.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return "jail-\(uid)-\(gid)-" + String(hash, radix: 16)
    }

    /// Whether the cgroups are made before the clone: with limits, init inherits descriptors of
    /// their procs files (the spawn path and new helpers join through them). Otherwise the
    /// supervisor makes them, and attaches the port filter, while init mounts (cloneInit).
    /// `--init` too: the payload's delegated cgroup is handed to init across the clone.
    var cgroupsBeforeClone: Bool {
        !configuration.limits.controllers.isEmpty || configuration.cpuset != nil || configuration.payload != nil
    }

    /// The jail's cgroups when this host has a cgroup file system (always for limits).
    func makeCgroups() throws(JailError) -> JailCgroups? {
        let mountinfo = try JailError.wrap { () throws(SystemError) in try readText("/proc/self/mountinfo") }
        let mounts = CgroupMounts.parse(mountinfo: mountinfo)
        if configuration.rootless { return nil }  // not delegated to users; Rootless.check refuses limits
        if mounts.unified == nil && configuration.limits.controllers.isEmpty && configuration.ports == nil { return nil }
        var limits = configuration.limits
        limits.cpuset = configuration.cpuset ?? limits.cpus.map { cpus in
            CPUSet.pick(cpus: cpus, online: Self.onlineCPUs(), used: Self.cpusetUsage(mounts: mounts))
        }
        return try JailCgroups.create(name: cgroupName, limits: limits, mounts: mounts,
                                      deferUnified: configuration.cgroupNamespace)
    }

    /// The host's online CPUs (/sys/devices/system/cpu/online).
    static func onlineCPUs() -> [Int] {
        let text = (try? readText("/sys/devices/system/cpu/online")) ?? ""
        return CPUSet.parse(String(text.trimmingWhitespace())) ?? [0]
    }

    /// How many running jails' programs may use each CPU: every `jail/*/programs/cpuset.cpus`
    /// of the cpuset hierarchy (one small read per jail with a set, at the start of a jail
    /// with `--cpus`).
    static func cpusetUsage(mounts: CgroupMounts) -> [Int: Int] {
        guard let hierarchy = mounts.v1["cpuset"] ?? mounts.unified else { return [:] }
        var used: [Int: Int] = [:]
        for jail in listDirectory("\(hierarchy)/jail") {
            guard let text = try? readText("\(hierarchy)/jail/\(jail)/programs/cpuset.cpus"),
                  let cpus = CPUSet.parse(String(text.trimmingWhitespace())) else { continue }
            for cpu in cpus { used[cpu, default: 0] += 1 }
        }
        return used
    }

    /// The socket directory: created (root's, 0755) when it is the default one, and verified
    /// in any case, so another local user cannot squat it or swap it for a symlink.
    func prepareDirectory() throws(JailError) {
        let directory = location.directory
        let isDefault = configuration.socketPrefix == nil
        if isDefault && (try? fileStatus(directory)) == nil {
            // A rootless user's directory may be several levels below the home (~/.local/state/jail/sockets).
            let missing = configuration.rootless ? missingDirectories(directory) : [directory]
            let mode: mode_t = configuration.rootless ? 0o700 : 0o755
            try JailError.wrap { () throws(SystemError) in
                for path in missing { try ensureDirectory(path, mode: mode) }
            }
        }
        // Rootless without $XDG_RUNTIME_DIR the directory is in the home, never in /tmp (where
        // another user could make it first): the error says where it comes from.
        let hint = configuration.rootless && isDefault && environmentValue("XDG_RUNTIME_DIR") == nil
            ? " (without $XDG_RUNTIME_DIR a rootless jail's socket lives in ~/\(SocketLocation.userStateDirectory))" : ""
        let owners: [UInt32] = configuration.rootless ? [0, getuid()] : [0]
        let reason = try JailError.wrap { () throws(SystemError) in try untrustedDirectoryReason(directory, owners: owners) }
        if let reason { throw .unsafeSocketDirectory(directory, reason: reason + hint) }
        // A user's own directory must be theirs alone: nobody else may even look in.
        if configuration.rootless && isDefault, let info = try? fileStatus(directory) {
            if info.st_uid != getuid() { throw .unsafeSocketDirectory(directory, reason: "is owned by uid \(info.st_uid)" + hint) }
            if info.st_mode & 0o077 != 0 {
                throw .unsafeSocketDirectory(directory, reason: "is mode \(String(info.st_mode & 0o777, radix: 8)), not 700" + hint)
            }
        }
    }

    /// The directories from the first missing one down to `directory`, outermost first.
    func missingDirectories(_ directory: String) -> [String] {
        var missing: [String] = []
        var path = directory
        while path.count > 1, (try? fileStatus(path)) == nil {
            missing.insert(path, at: 0)
            guard let slash = path.lastIndex(of: "/") else { break }
            path = String(path[..<slash])
        }
        return missing
    }

    /// The socket, mode 0600, owned by the jail's user.
    func bindSocket() throws(JailError) -> FileDescriptor {
        let path = location.socketPath
        // We hold the pid file lock, so anything at the path is left over from a dead jaild.
        if let info = try JailError.wrap({ () throws(SystemError) in try fileStatus(path) }) {
            guard isSocket(info) || isSymlink(info) else { throw .socketInTheWay(path, reason: "a file that is not a socket is in the way") }
            try JailError.wrap { () throws(SystemError) in try removeFile(path) }
        }
        // Nobody may connect before the owner and mode are right: the socket is bound under a
        // temporary name, given its owner and mode, and renamed into place, so a client that
        // sees the path always finds the finished socket (rename is atomic).
        let temporary = path + ".new"
        return try JailError.wrap { () throws(SystemError) in
            try removeFile(temporary)
            let listener = try withFileCreationMask(0o077) { () throws(SystemError) in try UnixSocket.listen(path: temporary) }
            do throws(SystemError) {
                if !configuration.rootless { try setOwner(temporary, uid: account.uid, gid: account.gid) }
                try setMode(temporary, 0o600)
                try renameFile(temporary, to: path)
            } catch {
                listener.closeQuietly()
                discardFile(temporary)
                throw error
            }
            return listener
        }
    }
}
