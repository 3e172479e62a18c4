import CJail
import JailIO
import JailProtocol
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The descriptors the supervisor hands to init across the clone.
struct InitChannels {
    let listener: FileDescriptor
    let ready: FileDescriptor
    let lifeline: FileDescriptor
    let log: FileDescriptor
    /// Where boot commands write; the supervisor logs each line.
    let bootOutput: FileDescriptor
    /// `programs/cgroup.procs` of each hierarchy, for the spawn path.
    let programCgroups: [Int32]
    /// The adoption socket and the read ends of the log and boot pipes (Init+Adoption.swift);
    /// nil for a rootless jail, which dies with its supervisor.
    let adoption: (control: FileDescriptor, logRead: FileDescriptor, bootRead: FileDescriptor)?
    /// `sessions/cgroup.procs` of each hierarchy with a helpers' limit (memory, CPU).
    let sessionCgroups: [Int32]
    /// Root's user namespace with a rootfs: the rootfs, idmapped by the supervisor, detached.
    let rootTree: FileDescriptor?
    /// `--init`: `programs/payload/cgroup.procs` of the unified hierarchy, delegated to the
    /// jail's root (the payload's cgroup namespace is rooted there).
    var payloadCgroup: Int32? = nil
    /// init was born in `init.scope` (Supervisor+BirthCgroup.swift) and roots its cgroup
    /// namespace at this directory, `jail/NAME`, right after "G" ("N"); no "L": "C" comes once
    /// the limits are set. nil: the moves ("C", unshare, "N", "L").
    var cgroupNamespaceRoot: Int32? = nil
}

/// PID 1 of the jail: "jaild: init [UID:GID]".
///
/// It owns the listening socket (bound on the host side, so the jail cannot see its path),
/// accepts, checks the peer's credentials, forks one session helper per connection and reaps
/// every process that ends in the jail. It never reads a byte from a client: if PID 1 dies the
/// kernel kills the whole jail, so everything that parses runs in a helper, where a crash costs
/// one session. Single-threaded: it forks without exec.
struct Init {
    let configuration: JailConfiguration
    let account: Account
    let listener: FileDescriptor
    let signals: SignalDescriptor
    /// What every program gets (cgroups, rlimits, capabilities), handed to each helper.
    let programSettings: ProgramSettings
    /// The stop: where it is, and what it does next (StopSequence, Init+Stop.swift).
    var stop: StopSequence
    /// Every child init forked and waits for, with its kind (InitChildren). The session
    /// helpers among them outlive the session programs at stop, so each client still gets its
    /// program's exit status (137 after SIGKILL) instead of a cut connection.
    var children = InitChildren()
    var bootServices: [BootService] = []
    /// The sealed memfd `jail-boot` that says how often boot services were restarted, for
    /// `jaild metrics` (Init+Boot.swift); -1 until the first restart.
    var bootRestartRecord: Int32 = -1
    /// How init outlives its supervisor and is adopted by the next one.
    var adoption: InitAdoption?
    /// Each new helper joins these (`InitChannels.sessionCgroups`).
    var sessionCgroups: [Int32] = []
    /// Closed at stop: the service relay's stop (ServiceRelay.stopSignal).
    var serviceRelayStop: FileDescriptor?
    /// `--syslog`: the jail's /dev/log until its first datagram starts the relay (SyslogRelay+Init.swift).
    var syslogEndpoint: SyslogRelay.Endpoint?
    /// The number of the next session (session records: `id=N`; a helper that dies before
    /// its end line, a crash or SIGKILL, gets one from init with its number).
    var nextSessionID = 1
    /// The helper forked ahead of the next session (Init+Spare.swift), if any.
    var spare: SpareHelper?
    /// The spare last handed a connection, until its program runs (Init+Spare.swift).
    var startingSession: SpareHelper?
    /// A connection sent to the spare that it has not acknowledged yet (Init+Spare.swift).
    var handOff: PendingHandOff?
    var jailName: String { configuration.name(account: account) }
    /// Where `--rc` and `--rc-stop` write (the boot output pipe), kept open for rc-stop.
    var serviceOutput: FileDescriptor?
    /// The host asked to stop while the rc ran: the stop begins once the jail is ready.
    var stopPending = false
    /// `--init`: the payload (Init+Payload.swift), nil without.
    var payload: PayloadState?
    /// Once the stop has begun (the listener is closed, no spare is forked).
    var stopping: Bool { stop.isStopping }
    /// init's exit status at the end of the stop: 0, or `payloadPoweredOff` when the stop
    /// was the payload's own (`systemctl poweroff` inside), which the supervisor takes for a
    /// stop asked for (it exits 0).
    var exitCode: Int32 {
        get { stop.exitCode }
        set { stop.exitCode = newValue }
    }
    static let payloadPoweredOff: Int32 = 3

    /// What the first process of the new namespaces does: set up the jail, report readiness
    /// (or the one-line reason it failed) on `ready`, then serve until the stop is over. The
    /// one place init exits: with the stop's status, or 1 when the start failed.
    static func run(configuration: JailConfiguration, account: Account, channels: InitChannels) -> Never {
        currentLogSink = .supervisorPipe
        keepOnlyOwnDescriptors(channels)
        do {
            try tieToTheSupervisor(channels)
            try takeStdio(log: channels.log)
            try awaitGo(lifeline: channels.lifeline, .go)
            // Before the mounts: the short-lived child that makes the namespace is born in
            // `jail/NAME` with init's host-root file access (fsuid 0 until MountPlan makes it
            // the namespace's root), which writing to a cgroup takes.
            if let root = channels.cgroupNamespaceRoot { try enterCgroupNamespace(rootedAt: root, channels: channels) }
            // Root's user namespace: the login uid is set now, while init still has host root's
            // ids; once it is the namespace's root its /proc/self files are host root's.
            if configuration.mapsRange { try AuditIdentity.setLoginUID(account.uid) }
            // --syslog: the host's socket is reachable only before pivot_root (SyslogRelay).
            let syslogTarget = configuration.syslog ? try SyslogRelay.connectTarget(configuration.syslogTarget) : nil
            // The host's cgroup mounts, for the jail's own /sys/fs/cgroup (CgroupView).
            let cgroupHierarchies = configuration.cgroupNamespace
                ? CgroupView.hostHierarchies(mountinfo: (try? readText("/proc/self/mountinfo")) ?? "") : []
            // The host's tree leaves init's view at pivot_root: what proves host root on the
            // control socket is recorded now (OperatorProof).
            let operatorProof = channels.adoption == nil ? nil : try OperatorProof.record()
            // --service: the host sockets' directories, opened while the host's tree is in view.
            let serviceDirectories = try ServiceEndpoint.openHostDirectories(configuration.services)
            try MountPlan(configuration: configuration).apply(rootTree: channels.rootTree)
            channels.rootTree?.closeQuietly()
            // The supervisor made the cgroups while init mounted; init forks nothing before.
            try awaitGo(lifeline: channels.lifeline, .cgroupsJoined)
            if configuration.cgroupNamespace && channels.cgroupNamespaceRoot != nil {
                // Born there in the unified hierarchy alone (the v1 ones are the host's).
                try CgroupView.mount(cgroupHierarchies.filter { $0.type == "cgroup2" })
            } else if configuration.cgroupNamespace {
                try enterCgroupNamespace(hierarchies: cgroupHierarchies, channels: channels)
            }
            // Becoming the user namespace's root changed init's credentials, which clears the
            // parent-death signal: armed again, and the lifeline checked once more.
            if configuration.mapsRange { try tieToTheSupervisor(channels) }
            // With adoption, the lifeline's end of file is how init learns the supervisor is gone.
            if channels.adoption == nil { channels.lifeline.closeQuietly() }
            replaceHostNull()
            try setUpIdentity(configuration: configuration, account: account)
            if let hostname = configuration.hostname, configuration.root != nil, let outcome = EtcHosts.ensure(hostname) {
                if outcome.warning { log.warning("\(outcome.message)") } else { log.info("\(outcome.message)") }
            }
            if configuration.root != nil { try JailInfo.write(configuration: configuration, account: account) }
            // The jail's /run is new at each start: the boot's utmp records, as sysvinit's
            // init writes them, so that `runlevel` answers and invoke-rc.d starts services.
            // A booted payload (--init) keeps a /run of its own and writes its own.
            if configuration.root != nil && configuration.payload == nil
                && !Utmp.recordBoot(runlevel: configuration.runlevel, group: SessionRecord.utmpGroup()) {
                log.warning("no runlevel in the jail's /run/utmp (no root-owned /run there): invoke-rc.d will start nothing")
            }
            // --init: the payload's keeper, forked before init hardens itself (Payload.swift).
            let payloadKeeper = configuration.payload == nil ? nil
                : try PayloadKeeper.start(configuration, account: account, programCgroups: channels.programCgroups,
                                          payloadCgroup: channels.payloadCgroup)
            // In init's cgroup now ("C"), and not yet under the programs' seccomp and Landlock.
            let serviceRelay = try ServiceRelay.start(configuration, account: account, hostDirectories: serviceDirectories)
            let settings = try harden(configuration: configuration, account: account, channels: channels)
            cj_set_proctitle("jaild: init [\(account.uid):\(account.gid)]")
            let signals = try JailError.wrap { () throws(SystemError) in
                try SignalDescriptor([SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT])
            }
            let stop = StopSequence(stopTimeoutMilliseconds: Int64(configuration.stopTimeout) * 1000,
                                    withPayload: configuration.payload != nil)
            var initProcess = Init(configuration: configuration, account: account, listener: channels.listener,
                                   signals: signals, programSettings: settings, stop: stop)
            if let adoption = channels.adoption, let operatorProof {
                initProcess.adoption = InitAdoption(control: adoption.control, lifeline: channels.lifeline, logRead: adoption.logRead,
                                                    bootRead: adoption.bootRead, proof: operatorProof)
            }
            initProcess.sessionCgroups = channels.sessionCgroups
            if let payloadKeeper {
                initProcess.payload = PayloadState(keeper: payloadKeeper.pid, events: payloadKeeper.events,
                                                   commands: payloadKeeper.commands)
                initProcess.children[payloadKeeper.pid] = .payloadKeeper
                initProcess.setPayloadPhase(.starting)
                try initProcess.awaitPayloadReady()
            }
            if serviceRelay.pid > 0 { initProcess.children[serviceRelay.pid] = .serviceRelay }
            initProcess.serviceRelayStop = serviceRelay.stop
            if configuration.syslog {
                let endpoint = try SyslogRelay.bind(target: syslogTarget, jail: configuration.name(account: account))
                try initProcess.serveSyslog(endpoint, startNow: configuration.rc != nil)
            }
            initProcess.serviceOutput = channels.bootOutput
            // "R" and the rc's exit status, in one write (atomic on a pipe).
            let rcStatus = try initProcess.runStartRC(output: channels.bootOutput)
            Readiness.ready(rcStatus.map { "\($0)" } ?? "").send(on: channels.ready)
            channels.ready.closeQuietly()
            initProcess.startBootCommands(output: channels.bootOutput)
            if initProcess.stopPending { initProcess.beginStop() }
            if initProcess.stop.exitStatus == nil { SessionRehearsal.run(configuration: configuration) }
            initProcess.forkSpare()
            _exit(initProcess.serve())
        } catch {
            Readiness.failed("\(error)").send(on: channels.ready)
            _exit(1)
        }
    }

    /// Nothing of the supervisor's stays open here: its pid file lock, its signalfd and the
    /// lifeline's write end (else `tieToTheSupervisor` could never see it close).
    static func keepOnlyOwnDescriptors(_ channels: InitChannels) {
        let keep = [channels.listener.rawValue, channels.ready.rawValue, channels.lifeline.rawValue, channels.log.rawValue,
                    channels.bootOutput.rawValue] + channels.programCgroups + channels.sessionCgroups
            + (channels.rootTree.map { [$0.rawValue] } ?? []) + (channels.payloadCgroup.map { [$0] } ?? [])
            + (channels.cgroupNamespaceRoot.map { [$0] } ?? [])
            + (channels.adoption.map { [$0.control.rawValue, $0.logRead.rawValue, $0.bootRead.rawValue] } ?? [])
        keep.withUnsafeBufferPointer { cj_close_all_except(3, $0.baseAddress, Int32($0.count)) }
    }

    /// What the supervisor's death does to init: during setup it ends the start; once running,
    /// a root jail lives on to be adopted and a rootless one dies with it.
    static func tieToTheSupervisor(_ channels: InitChannels) throws(JailError) {
        // The jail outlives its supervisor (it is adopted by the next one, Init+Adoption.swift);
        // a rootless jail, which no other jaild can find, dies with it. The lifeline closes
        // the window between clone and prctl, and during setup a dead supervisor ends it.
        if channels.adoption == nil { _ = cj_set_parent_death_signal(SIGKILL) }
        // Inherited from the supervisor, and set again: a log line written after it died must
        // fail with EPIPE (or, with init holding the read end, just wait), never kill init.
        _ = cj_ignore_signal(SIGPIPE)
        if channels.lifeline.isHungUp() { throw supervisorGone }
    }

    /// The lifeline closed during setup: the supervisor is gone, and the start with it.
    static let supervisorGone = JailError.startFailed("the supervisor is gone (its lifeline closed)")

    /// init's stdio: nothing from the host. fd 2 is the log pipe to the supervisor.
    /// Close-on-exec like every other descriptor of init: nothing of it reaches a program.
    static func takeStdio(log logPipe: FileDescriptor) throws(JailError) {
        let devNull = try JailError.wrap { () throws(SystemError) in try openFile("/dev/null", O_RDWR) }.rawValue
        // A range, not an array of pairs: that array's type is made at run time, 0.05 ms of init's start.
        for target: Int32 in 0...2 {
            let source = target == 2 ? logPipe.rawValue : devNull
            guard source != target else { continue }
            dup2(source, target)
            _ = cj_set_cloexec(target)
        }
        if devNull > 2 { closeDescriptor(devNull) }
        if logPipe.rawValue > 2 { logPipe.closeQuietly() }
    }

    /// The supervisor says "G" once init's user namespace has its ids (and the root tree its
    /// mapping): nothing may mount before. It says "C" once init is in its cgroups and the port
    /// filter is attached: nothing may fork before. EOF: the supervisor is gone, the start too.
    static func awaitGo(lifeline: FileDescriptor, _ word: LifelineWord) throws(JailError) {
        guard word.await(on: lifeline) else { throw supervisorGone }
    }

    /// In the jail's cgroup (`jail/NAME`, "C"): the cgroup namespace rooted there, "N" to the
    /// supervisor, which moves init into `init.scope` and enables the limits ("L"); then the jail's
    /// hierarchies on its /sys/fs/cgroup (CgroupView).
    static func enterCgroupNamespace(hierarchies: [CgroupView.Hierarchy], channels: InitChannels) throws(JailError) {
        let own = CgroupView.jailHierarchies(hierarchies, cgroupFile: (try? readText("/proc/self/cgroup")) ?? "")
        try CgroupView.enterNamespace()
        try JailError.wrap { () throws(SystemError) in try channels.ready.writeFully([CgroupNamespaceMade.byte]) }
        try awaitGo(lifeline: channels.lifeline, .limitsSet)
        try CgroupView.mount(own)
    }

    /// Born in `init.scope`: the namespace rooted at `jail/NAME` (`root`) without moving
    /// there, then "N" (the supervisor may enable the v2 controllers there now).
    static func enterCgroupNamespace(rootedAt root: Int32, channels: InitChannels) throws(JailError) {
        try JailError.wrap { () throws(SystemError) in
            try syscall("cgroup namespace (clone3 into jail/NAME, setns)") { cj_enter_cgroup_namespace_rooted_at(root) }
        }
        close(root)
        try JailError.wrap { () throws(SystemError) in try channels.ready.writeFully([CgroupNamespaceMade.byte]) }
    }

    /// stdin and stdout were the host's /dev/null until now: nothing of the host stays.
    static func replaceHostNull() {
        let jailNull: Int32
        do { jailNull = try openFile("/dev/null", O_RDWR).rawValue } catch {
            log.warning("init's stdin and stdout stay the host's /dev/null: \(error)")
            return
        }
        for target: Int32 in [0, 1] where jailNull != target {
            dup2(jailNull, target)
            _ = cj_set_cloexec(target)
        }
        if jailNull > 2 { closeDescriptor(jailNull) }
    }

    static func setUpIdentity(configuration: JailConfiguration, account: Account) throws(JailError) {
        if let hostname = configuration.hostname {
            try JailError.wrap { () throws(SystemError) in try setHostName(hostname) }
        }
        if access(account.shell, X_OK) != 0 {
            throw JailError.failed("shell \(account.shell) of \(account.name) is not executable in the jail", .last("access", path: account.shell))
        }
    }

    /// Login uid, non-dumpable, bounding set, seccomp, Landlock; then what every program gets.
    static func harden(configuration: JailConfiguration, account: Account, channels: InitChannels) throws(JailError) -> ProgramSettings {
        if !configuration.mapsRange { try AuditIdentity.setLoginUID(account.uid) }
        try JailError.wrap { () throws(SystemError) in try Hardening.forbidDumps() }
        try Hardening.apply(extraCapabilities: configuration.capabilities, allowAio: configuration.allowAio,
                            allowSetns: configuration.payload != nil)
        return ProgramSettings(cgroupProcs: channels.programCgroups,
                               resourceLimits: configuration.resourceLimits,
                               ambientCapabilities: Capability.mask(configuration.capabilities),
                               supplementaryGroups: !configuration.rootless,
                               resetOOMScore: Init.oomScoreAdjusted())
    }

    /// Additional sessions for host root beyond `--max-sessions` (`InitChildren.operatorSessions`).
    static let operatorSlots = 4

    /// The sessions `--max-sessions` counts: the tenant's (every helper but the operator's).
    var tenantSessions: Int { children.tenantSessions }

    /// The loop, until the stop is over: returns the status init exits with.
    mutating func serve() -> Int32 {
        var poller = Poller()
        var idlePages = IdlePages()
        while true {
            if let status = stop.exitStatus { return status }
            serveOnce(&poller, &idlePages)
        }
    }

    /// One turn of the loop: a wait for the first thing to happen, then every handler whose
    /// descriptor is ready. A turn that ends the stop ends there: nothing after it may run.
    mutating func serveOnce(_ poller: inout Poller, _ idlePages: inout IdlePages) {
        poller.reset()
        let signalIndex = poller.add(signals.fd.rawValue, read: true)
        let listenIndex = stopping ? -1 : poller.add(listener.rawValue, read: true)
        let startedIndex = startingSession.map { poller.add($0.channel.rawValue, read: true) } ?? -1
        let handOffIndex = handOff.map { poller.add($0.spare.channel.rawValue, read: true) } ?? -1
        let adoptionWatch = adoption?.addPolls(&poller)
        let payloadIndex = payload.flatMap { $0.eventsOpen ? poller.add($0.events.rawValue, read: true) : nil } ?? -1
        let syslogIndex = syslogEndpoint.map { poller.add($0.inside.rawValue, read: true) } ?? -1
        idlePages.wait(&poller, timeout: loopTimeout())
        if poller.readable(signalIndex) { handleSignals() }
        guard stop.exitStatus == nil else { return }
        if payloadIndex >= 0 && (poller.readable(payloadIndex) || poller.hungUp(payloadIndex)) { readPayloadEvents() }
        guard stop.exitStatus == nil else { return }
        if handOffIndex >= 0 && (poller.readable(handOffIndex) || poller.hungUp(handOffIndex)) { handOffAnswered() }
        checkHandOffDeadline()
        if startedIndex >= 0 && (poller.readable(startedIndex) || poller.hungUp(startedIndex)) { sessionStarted() }
        if listenIndex >= 0 && poller.readable(listenIndex) { acceptAll() }
        if syslogIndex >= 0 && poller.readable(syslogIndex) { startSyslogRelay() }
        if let adoptionWatch {
            adoption?.handle(poller, adoptionWatch)
            for request in adoption?.takeOperatorSessions() ?? [] { startOperatorSession(request) }
        }
        if let deadline = stop.deadline, monotonicMilliseconds() >= deadline { advanceStop(.deadlinePassed) }
        guard stop.exitStatus == nil else { return }
        restartDueBootServices()
    }

    /// Until the nearest deadline: the stop's, a pending hand-off's, a boot restart's (-1: none).
    func loopTimeout() -> Int32 {
        let deadlines = [stop.deadline, handOff?.deadline, nextBootRestart].compactMap { $0 }
        guard let nearest = deadlines.min() else { return -1 }
        return Int32(clamping: max(0, nearest - monotonicMilliseconds()))
    }

    /// `jaild enter` through the control socket, host root proven (Init+Adoption.swift):
    /// answered with the go-ahead or the reason it is refused.
    mutating func startOperatorSession(_ connection: FileDescriptor) {
        let refusal: String? = stopping ? "the jail is stopping"
            : children.operatorSessions >= Self.operatorSlots ? "\(Self.operatorSlots) operator sessions are running" : nil
        if let refusal {
            logOperatorRefusal(refusal)
            _ = try? UnixSocket.send(connection, OperatorEntry.refusal(refusal), passing: [])
            connection.closeQuietly()
            return
        }
        guard (try? UnixSocket.send(connection, OperatorEntry.accepted, passing: [])) != nil else {
            connection.closeQuietly()
            return
        }
        // Always a fresh fork: the operator's way in does not depend on a spare that root
        // inside could have stopped.
        startHelper(connection, hostRoot: true, operator: true)
    }

    mutating func acceptAll() {
        while let connection = try? UnixSocket.accept(listener) {
            guard let peer = try? UnixSocket.peerCredentials(connection) else {
                connection.closeQuietly()
                continue
            }
            // In a user namespace SO_PEERCRED shows a host uid without an id inside (host root
            // too) as the overflow uid 65534: refused, as the jail's own nobody would be. Root
            // on the host enters through the control socket instead (`jaild enter`).
            guard peer.uid == account.uid || (peer.uid == 0 && !configuration.inUserNamespace) else {
                let who = configuration.inUserNamespace && peer.uid == 65534 ? "a host uid without an id in the jail" : "uid \(peer.uid)"
                logRefusal(peer, "wrong peer uid \(peer.uid)")
                refuse(connection, "\(who) may not enter the jail of uid \(account.uid)")
                continue
            }
            // Host root's own slots are the control socket's (`jaild enter`); a connection to
            // this socket counts against the cap, whoever made it.
            guard tenantSessions < configuration.maxSessions else {
                logRefusal(peer, "\(configuration.maxSessions) sessions are running")
                refuse(connection, "the jail has reached its limit of \(configuration.maxSessions) sessions")
                continue
            }
            startHelper(connection, hostRoot: peer.uid == 0 && !configuration.inUserNamespace)
        }
    }

    /// One session helper for a connection: the spare if there is one (it takes the connection
    /// once it acknowledges, Init+Spare.swift), else a fork; then a new spare behind it.
    /// `hostRoot`: root on the host, known by the socket it came through (the jail's socket
    /// without a user namespace, or the root-only control socket). `operator`: a session in
    /// the operator's slots, always a fresh fork.
    mutating func startHelper(_ connection: FileDescriptor, hostRoot: Bool, operator: Bool = false) {
        let id = nextSessionID
        nextSessionID += 1
        defer { forkSpare() }
        if !`operator` && handToSpare(connection, id: id, hostRoot: hostRoot) { return }
        forkHelper(connection, id: id, hostRoot: hostRoot, operator: `operator`)
    }

    /// Forks session `id`'s helper for the connection (closed here, the helper has its copy).
    /// An operator's helper stays in init's cgroup: the tenant's helpers cannot use up its
    /// memory or CPU (the `sessions` cgroup's limits are the tenant's).
    mutating func forkHelper(_ connection: FileDescriptor, id: Int, hostRoot: Bool, operator: Bool) {
        let pid = fork()
        if pid == 0 {
            listener.closeQuietly()
            signals.fd.closeQuietly()
            serviceRelayStop?.closeQuietly()  // else the relay's stop would wait for this helper
            syslogEndpoint?.close()
            adoption?.closeInChild()
            if !`operator` { SessionCgroup.join(sessionCgroups) }
            SessionHelper.run(connection: connection, configuration: configuration, settings: programSettings,
                              jail: jailName, id: id, hostRoot: hostRoot)
        }
        if pid < 0 {
            log.error("fork of a session helper: \(Errno(rawValue: errno))")
        } else {
            children[pid] = .sessionHelper(id: id, operator: `operator`)
        }
        connection.closeQuietly()
    }

    /// The refusal's session record (pure text from init's own values: nothing from the client).
    func logRefusal(_ peer: PeerCredentials, _ reason: String) {
        log.warning("\(Logfmt.line("session refused", [("jail", jailName), ("peer_uid", "\(peer.uid)"), ("peer_pid", "\(peer.pid)"), ("reason", reason)]))")
    }

    /// An operator's session refused on the control socket (host root, proven).
    func logOperatorRefusal(_ reason: String) {
        log.warning("\(Logfmt.line("session refused", [("jail", jailName), ("peer", "host root (control socket)"), ("reason", reason)]))")
    }

    /// One error frame, sent without waiting (init never blocks on a client), then close.
    func refuse(_ connection: FileDescriptor, _ reason: String) {
        var channel = FrameChannel(socket: connection)
        channel.send(.error(reason))
        channel.flush()
        connection.closeQuietly()
    }

    mutating func handleSignals() {
        guard let pending = try? signals.receive() else { return }
        for received in pending {
            switch received.signal {
            case SIGCHLD:
                reapAllThenExitIfNoneLeft()
            default:
                // Only the host may stop the jail, and only with kill(2) (jaild, kill, systemd):
                // a sender outside the jail's PID namespace shows as pid 0, but so does a signal
                // the kernel sends for a file's owner (F_SETOWN + F_SETSIG, which root inside can
                // aim at init), and sigqueue's pid is the sender's to choose. Those are logged,
                // not obeyed; a stop otherwise comes from the supervisor or `jaild stop`.
                guard received.killedFromOutside else {
                    log.warning("ignored \(Self.describe(received))")
                    continue
                }
                beginStop()
            }
        }
    }

    /// What an ignored signal was, for its log line.
    static func describe(_ received: ReceivedSignal) -> String {
        if received.sender != 0 { return "signal \(received.signal) sent to init by pid \(received.sender) inside the jail" }
        return "signal \(received.signal) sent to init with si_code \(received.code), not by kill(2): only a kill from the host stops the jail"
    }

    /// Whether the supervisor took init out of the OOM killer's reach (oom_score_adj not 0);
    /// only then must each program set its own back, one /proc write per session.
    static func oomScoreAdjusted() -> Bool {
        readNumber("/proc/self/oom_score_adj") != 0
    }
}
