import ArgumentParser
import JailDaemon
import JailProtocol

#if canImport(Glibc)
import Glibc
#endif

/// `jaild start` (the default verb): starts a jail and serves sessions into it. Flags of the
/// 2014 version keep their meaning: -a -u -g -n -r -s -m -c -h -v. Every start option lives
/// here, and each is also a config-file key (ConfigFile.keys).
struct StartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start a jail (the default verb): a container that a host account's sessions enter through `jail`.",
        discussion: """
            jaild creates new PID, mount, UTS and IPC namespaces (never a network namespace: \
            the jail shares the host's network, so its daemons bind the host's ports), pivots \
            into ROOT and stays inside as PID 1. Sessions arrive through a unix socket on the \
            host side, by default /run/jail/jaild-UID-GID.sock.
            By default jaild daemonizes and exits 0 once the socket accepts sessions. \
            SIGTERM to the pid in the pid file next to the socket stops the jail.
            `jaild start NAME` reads /etc/jail/NAME.conf and names the jail NAME.
            """)

    @Argument(help: ArgumentHelp("Read /etc/jail/NAME.conf and name the jail NAME (the first argument after start).",
                                 valueName: "name"))
    var configName: String?

    @Option(name: [.customShort("a"), .customLong("socket-prefix")],
            help: ArgumentHelp("Socket path prefix: the socket is PREFIX-UID-GID.sock.", valueName: "prefix"))
    var socketPrefix: String?

    @Option(name: [.customShort("u"), .customLong("uid")],
            help: ArgumentHelp("The jail user's uid (not 0); sessions run as this uid.", valueName: "uid"))
    var uid: UInt32?

    @Option(name: [.customShort("g"), .customLong("gid")],
            help: ArgumentHelp("The jail user's gid (default: the user's group in the jail's /etc/passwd).", valueName: "gid"))
    var gid: UInt32?

    @Option(name: [.customShort("n"), .customLong("name")],
            help: ArgumentHelp("Use this entry of the jail's /etc/passwd (its uid must be UID).", valueName: "name"))
    var userName: String?

    @Option(name: [.customShort("r"), .customLong("root")],
            help: ArgumentHelp("The jail's root file system (default: stay in the host's root).", valueName: "dir"))
    var root: String?

    @Option(name: [.customShort("s"), .customLong("shell")],
            help: ArgumentHelp("Shell to run in sessions, instead of the user's shell in the jail.", valueName: "path"))
    var shell: String?

    @Option(name: [.customShort("m"), .customLong("mount")],
            help: ArgumentHelp("Bind-mount a host path into the jail; add :ro for read-only. Repeatable.",
                               valueName: "jpath=hpath[:ro]"), transform: OptionValue.bindMount)
    var mounts: [BindMount] = []

    @Option(name: .customLong("hostname"), help: ArgumentHelp("The jail's host name (UTS namespace).", valueName: "name"))
    var hostname: String?

    @Option(name: .customLong("stop-timeout"),
            help: ArgumentHelp("Seconds between SIGTERM and SIGKILL to the jail's processes at stop.", valueName: "seconds"))
    var stopTimeout: Int = 10

    @Option(name: .customLong("max-sessions"),
            help: ArgumentHelp("Concurrent sessions allowed; the jail gets twice as many ptys.", valueName: "n"))
    var maxSessions: Int = 256

    @Option(name: .customLong("handshake-timeout"),
            help: ArgumentHelp("Seconds a connecting client has to start its session.", valueName: "seconds"))
    var handshakeTimeout: Int = 10

    @Option(name: .customLong("boot"),
            help: ArgumentHelp("Run CMD in the jail at start, as its user; output to jaild's log. Repeatable.",
                               valueName: "cmd"))
    var bootCommands: [String] = []

    @Option(name: .customLong("boot-restart"),
            help: ArgumentHelp("Restart a --boot command that exits: no (default), on-failure, always; "
                               + "with a back-off of 100 ms doubling to 30 s, at most 5 starts in 10 s.",
                               valueName: "policy"))
    var bootRestart: BootRestart = .no

    @Option(name: .customLong("cap"),
            help: ArgumentHelp("Give the jail's programs this capability (e.g. NET_BIND_SERVICE). Repeatable.",
                               valueName: "name"), transform: OptionValue.capability)
    var capabilities: [Int] = []

    @Option(name: .customLong("memory"), help: ArgumentHelp("Memory limit of the jail's programs (e.g. 512M).", valueName: "size"),
            transform: OptionValue.memorySize)
    var memory: UInt64?

    @Option(name: .customLong("disk"),
            help: ArgumentHelp("Disk space of the jail's own files (e.g. 10G; at least 16M): docs/disk.md.", valueName: "size"))
    var disk: String?

    @Option(name: .customLong("disk-inodes"), help: ArgumentHelp("Most files the jail may have (needs --disk).", valueName: "n"))
    var diskInodes: String?

    @Option(name: .customLong("disk-backend"),
            help: ArgumentHelp("What holds --disk: auto (btrfs qgroup, else an image), btrfs, image or project.",
                               valueName: "backend"))
    var diskBackend: String?

    @Option(name: .customLong("pids"), help: ArgumentHelp("Most processes the jail's programs may have.", valueName: "n"))
    var pids: Int?

    @Option(name: .customLong("cpus"), help: ArgumentHelp("CPU time of the jail's programs, in CPUs (e.g. 0.5).", valueName: "fraction"))
    var cpus: Double?

    @Option(name: .customLong("rlimit"),
            help: ArgumentHelp("Resource limit for the jail's programs, e.g. nofile=1024:4096. Repeatable.",
                               valueName: "name=soft[:hard]"), transform: OptionValue.resourceLimit)
    var resourceLimits: [ResourceLimit] = []

    @Option(name: .customLong("ports"),
            help: ArgumentHelp("The only ports the jail may bind, e.g. tcp:25,tcp:8000-8099,udp:53 (cgroup-BPF).",
                               valueName: "spec"), transform: OptionValue.portSet)
    var ports: PortSet?

    @Flag(name: .customLong("ports-exclusive"), help: "Refuse to start if a running jail has one of these ports.")
    var portsExclusive = false

    @Option(name: .customLong("address"),
            help: ArgumentHelp("The only host address the jail may use (bind, source); a wildcard bind becomes it. "
                               + "IPv4 or IPv6, repeatable; see docs/security.md.", valueName: "addr"))
    var addresses: [String] = []

    @Flag(name: .customLong("address-shared"), help: "Let another jail that says so too have one of these addresses.")
    var addressShared = false

    @Option(name: .customLong("loopback"),
            help: ArgumentHelp("The jail's own 127/8 address, what its 127.0.0.1 becomes (default with --address: "
                               + "auto, one of --loopback-pool kept across restarts).", valueName: "127.x.y.z|auto"))
    var loopback: String?

    @Option(name: .customLong("loopback-pool"),
            help: ArgumentHelp("Where --loopback auto chooses from.", valueName: "cidr"))
    var loopbackPool: String?

    @Flag(name: .customLong("allow-host-loopback"),
          help: "With a loopback of its own, the jail may still reach the host's other 127/8 addresses.")
    var allowHostLoopback = false

    @Flag(name: .customLong("map-root"),
          help: "Rootless: be uid 0 inside the jail (still only yourself, mapped by a user namespace).")
    var mapRoot = false

    @Option(name: .customLong("accept-env"),
            help: ArgumentHelp("Also pass the client's variable NAME (or every NAME* of a prefix) into sessions, "
                               + "like sshd's AcceptEnv. Repeatable.", valueName: "name"))
    var acceptEnvironment: [String] = []

    @Option(name: .customLong("config"),
            help: ArgumentHelp("Read options from FILE (key = value); flags given here win.", valueName: "file"))
    var configFile: String?

    @Option(name: .customLong("base"),
            help: ArgumentHelp("ROOT is a copy-on-write overlay of DIR (read-only), with ROOT/../upper and ROOT/../work.",
                               valueName: "dir"))
    var base: String?
    @Flag(name: .customLong("no-userns"),
          help: "Root inside is host root (no user namespace): less safe, see docs/security.md.")
    var noUserns = false

    @Option(name: .customLong("userns-pool"),
            help: ArgumentHelp("Host ids for jails' user namespaces: COUNT ids from START, 65536 per jail.",
                               valueName: "start:count"), transform: OptionValue.userRangePool)
    var usernsPool: UserRangePool?

    @Option(name: .customLong("jail-name"),
            help: ArgumentHelp("The jail's name in session records and syslog tags (default: UID-GID).", valueName: "name"))
    var jailName: String?

    @Flag(name: .customLong("syslog"), inversion: .prefixedNo,
          help: ArgumentHelp("Serve /dev/log inside and relay messages to the host's, tagged jail/NAME; without a host "
                             + "syslog, to the jail's log file (default: on with -r ROOT)."))
    var syslog = true

    @Option(name: .customLong("views"),
            help: ArgumentHelp("lxcfs's /proc/meminfo, cpuinfo, stat, uptime … inside: auto (when lxcfs runs, else the "
                               + "host's and a warning), required (refuse to start without), off.", valueName: "mode"))
    var views: ViewsMode = .auto

    @Option(name: .customLong("lxcfs-directory"), help: ArgumentHelp("Where lxcfs is mounted.", valueName: "dir"))
    var lxcfsDirectory: String = LxcfsViews.defaultDirectory

    @Option(name: .customLong("cpuset"),
            help: ArgumentHelp("The CPUs of the jail's programs, e.g. 0-1,3 (default with --cpus F: ceil(F) CPUs picked by jaild).",
                               valueName: "list"), transform: OptionValue.cpuSet)
    var cpuset: [Int]?

    @Option(name: .customLong("shm-size"),
            help: ArgumentHelp("Size of the jail's /dev/shm (default: half of --memory, else 64M).", valueName: "size"),
            transform: OptionValue.shmSize)
    var shmSize: UInt64?

    @Option(name: .customLong("syslog-target"),
            help: ArgumentHelp("Where --syslog relays to (a datagram socket).", valueName: "path"))
    var syslogTarget: String = "/dev/log"

    @Option(name: .customLong("service"),
            help: ArgumentHelp("Serve the host's unix socket HOSTPATH at JPATH inside, each connection relayed after a "
                               + "PROXY v2 header naming the jail and caller (options: mode=, owner=, header=proxy|none, max=). "
                               + "Repeatable; see docs/services.md.", valueName: "jpath=hostpath[,options]"),
            transform: OptionValue.service)
    var services: [ServiceSpec] = []

    @Flag(name: [.customShort("c"), .customLong("foreground")], help: "Stay in the foreground and log to stderr.")
    var foreground = false

    @Flag(name: [.customShort("v"), .customLong("version")], help: "Print the version and exit.")
    var version = false

    @Option(name: .customLong("rc"),
            help: ArgumentHelp("Run CMD once at start as root inside the jail (/bin/sh -c): its system services. "
                               + "The start waits for it.", valueName: "cmd"))
    var rc: String?

    @Option(name: .customLong("rc-stop"),
            help: ArgumentHelp("Run CMD at stop as root inside, before the rest gets SIGTERM.", valueName: "cmd"))
    var rcStop: String?

    @Option(name: .customLong("rc-timeout"),
            help: ArgumentHelp("Seconds the start waits for --rc before killing it.", valueName: "seconds"))
    var rcTimeout: Int = 60

    @Flag(name: .customLong("rc-required"), help: "A failing --rc fails the start (default: logged, the jail runs).")
    var rcRequired = false

    @Option(name: .customLong("runlevel"),
            help: ArgumentHelp("The runlevel (1-5, default 2) init records in the jail's /run/utmp, for runlevel and invoke-rc.d.",
                               valueName: "n"))
    var runlevel: String = "2"

    @Option(name: .customLong("init"),
            help: ArgumentHelp("Boot the jail's distribution: PATH (e.g. /sbin/init, systemd) runs as PID 1 of a nested "
                               + "PID namespace under jaild's init; ARGS in the same string (split at spaces). Needs the user namespace.",
                               valueName: "path [args]"))
    var payload: String?

    @Option(name: .customLong("init-timeout"),
            help: ArgumentHelp("Seconds the start waits for --init's READY=1 (default 90).", valueName: "seconds"))
    var payloadTimeout: Int = 90

    @Flag(name: .customLong("init-required"), help: "--init not ready within --init-timeout fails the start (everything undone).")
    var payloadRequired = false

    @Flag(name: .customLong("allow-aio"),
          help: "Allow kernel AIO (io_setup/io_submit, e.g. for databases using libaio): it draws on the host-wide fs.aio-max-nr.")
    var allowAio = false

    @Flag(name: .customLong("forward-x11"),
          help: "Give sessions whose client has an X11 display (ssh -X) DISPLAY and their own Xauthority inside.")
    var forwardX11 = false

    @Flag(name: .customLong("forward-agent"), inversion: .prefixedNo,
          help: "Give sessions whose client has an ssh agent (ssh -A) an agent socket inside (default: on).")
    var forwardAgent = true

    func validate() throws {
        if version { return }
        // `jaild start NAME` became --config and --jail-name before parsing (ConfigExpansion):
        // a NAME still here stood elsewhere on the line.
        if let configName {
            throw ValidationError("unexpected argument '\(configName)' (a config's NAME comes right after `start`)")
        }
        guard uid != nil || Rootless.isRootless else { throw ValidationError("-u UID is required") }
        if mapRoot && !Rootless.isRootless { throw ValidationError("--map-root is for rootless jails (jaild run by a user)") }
        guard stopTimeout >= 0 else { throw ValidationError("--stop-timeout must be 0 or more") }
        guard (1...100_000).contains(maxSessions) else { throw ValidationError("--max-sessions must be 1 to 100000") }
        guard (1...3600).contains(handshakeTimeout) else { throw ValidationError("--handshake-timeout must be 1 to 3600") }
        if let disk { try checkDisk { () throws(DiskError) in _ = try DiskLimit.parseSize(disk) } }
        if let diskInodes { try checkDisk { () throws(DiskError) in _ = try DiskLimit.parseInodes(diskInodes) } }
        if let diskBackend { try checkDisk { () throws(DiskError) in _ = try DiskLimit.parse(size: "1G", inodes: nil, backend: diskBackend) } }
        if let pids, pids < 1 { throw ValidationError("--pids must be 1 or more") }
        if let cpus, !(cpus > 0 && cpus <= 4096) { throw ValidationError("--cpus must be above 0") }
        for address in addresses where HostAddress.parse(address) == nil {
            throw ValidationError("--address '\(address)' is not an IPv4 or IPv6 address")
        }
        if let loopback, case .failure(let error) = LoopbackChoice.parse(loopback) { throw ValidationError(error.description) }
        if let loopbackPool {
            do { _ = try LoopbackPool.parse(loopbackPool) } catch { throw ValidationError(error.description) }
        }
        if let jailName {
            guard !jailName.isEmpty, jailName.utf8.count <= 64,
                  jailName.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)) })
            else { throw ValidationError("--jail-name must be 1 to 64 letters, digits, '-', '_' or '.'") }
        }
        if !lxcfsDirectory.hasPrefix("/") { throw ValidationError("--lxcfs-directory must be an absolute path") }
        if !syslogTarget.hasPrefix("/") { throw ValidationError("--syslog-target must be an absolute path") }
        if !services.isEmpty && root == nil { throw ValidationError("--service needs -r ROOT: the socket is made in the jail's own tree") }
        for pattern in acceptEnvironment {
            if let problem = EnvironmentPolicy.problem(with: pattern) { throw ValidationError(problem) }
        }
        guard (1...3600).contains(rcTimeout) else { throw ValidationError("--rc-timeout must be 1 to 3600") }
        guard runlevel.count == 1, ("1"..."5").contains(runlevel) else { throw ValidationError("--runlevel must be 1 to 5") }
        guard (1...3600).contains(payloadTimeout) else { throw ValidationError("--init-timeout must be 1 to 3600") }
        if let payload {
            guard payload.hasPrefix("/") else { throw ValidationError("--init PATH must be absolute") }
            guard root != nil else { throw ValidationError("--init needs -r ROOT: the distribution to boot") }
        }
    }

    func checkDisk(_ parse: () throws(DiskError) -> Void) throws {
        do { try parse() } catch { throw ValidationError(error.description) }
    }

    func configuration() throws(JailError) -> JailConfiguration {
        // Rootless, -u defaults to the one uid a user namespace can map.
        var c = JailConfiguration(uid: uid ?? Rootless.insideIDs(mapRoot: mapRoot).uid)
        c.rootless = Rootless.isRootless
        c.mapRoot = mapRoot
        // Rootless, the group is the one the user namespace maps, whatever the jail's passwd says.
        c.gid = gid ?? (c.rootless ? Rootless.insideIDs(mapRoot: mapRoot).gid : nil)
        c.userName = userName
        c.root = root
        c.shell = shell
        c.hostname = hostname
        c.socketPrefix = socketPrefix
        c.foreground = foreground
        c.stopTimeout = stopTimeout
        c.maxSessions = maxSessions
        c.bootCommands = bootCommands
        c.bootRestart = bootRestart
        c.capabilities = capabilities
        c.limits = CgroupLimits(memory: memory, pids: pids, cpus: cpus)
        do { c.disk = try DiskLimit.parse(size: disk, inodes: diskInodes, backend: diskBackend) } catch { throw .disk(error) }
        c.resourceLimits = resourceLimits
        c.ports = ports
        c.portsExclusive = portsExclusive
        c.addresses = addresses.compactMap(HostAddress.parse)
        c.addressShared = addressShared
        c.loopback = try loopback.map { text throws(JailError) in try LoopbackChoice.parse(text).get() }
        if let pool = loopbackPool.flatMap({ try? LoopbackPool.parse($0) }) { c.loopbackPool = pool }
        c.allowHostLoopback = allowHostLoopback
        if let problem = c.addressProblem { throw .usage(problem) }
        c.environmentPolicy = EnvironmentPolicy(extra: acceptEnvironment)
        c.allowAio = allowAio
        // Low ports come from --ports: the bind filter waives the capability check for the
        // jail's own ports, while the capability would not reach the host's network from a
        // user namespace, and without the filter it would give every low port. With --ports
        // it is redundant and accepted.
        if !c.rootless && c.ports == nil && c.capabilities.contains(Capability.netBindService) {
            throw .usage("--cap NET_BIND_SERVICE: use --ports (e.g. --ports tcp:80) to let the jail bind its own low ports")
        }
        // systemd's Type=notify wants the main process to stay.
        if getenv("NOTIFY_SOCKET") != nil { c.foreground = true }
        c.handshakeTimeout = handshakeTimeout
        // Checked here, not in validate(): a config file's lines are validated one by one.
        if rcRequired && rc == nil { throw .usage("--rc-required needs --rc") }
        if (rc != nil || rcStop != nil) && Rootless.isRootless && !mapRoot {
            throw .usage("--rc and --rc-stop run as root inside: a rootless jail needs --map-root for that")
        }
        c.rc = rc
        c.rcStop = rcStop
        c.rcTimeout = rcTimeout
        c.rcRequired = rcRequired
        c.jailName = jailName
        // Without a root the jail has the host's /dev/log: nothing to serve.
        c.syslog = syslog && root != nil
        c.views = views
        c.lxcfsDirectory = lxcfsDirectory
        c.cpuset = cpuset
        c.shmSize = shmSize
        c.syslogTarget = syslogTarget
        c.services = services
        if let path = ServiceSpec.duplicate(in: c.services) { throw .usage("--service: two services on \(path) inside the jail") }
        c.jaildVersion = JailVersion.package
        c.forwardX11 = forwardX11
        c.forwardAgent = forwardAgent
        c.userNamespace = !c.rootless && !noUserns
        if let usernsPool { c.userNamespacePool = usernsPool }
        c.mounts = mounts
        if let shell, !shell.hasPrefix("/") { throw .usage("shell \(shell) must be an absolute path") }
        c.base = base
        c.runlevel = runlevel.first ?? "2"
        if let payload {
            // Without a user namespace root inside is host root: the payload's init must mount
            // (its own /proc, cgroup2, its units' sandboxes), and no child user namespace
            // would lock the jail's mounts against it.
            if !c.userNamespace {
                throw .usage("--init needs the user namespace (it cannot be combined with --no-userns or a rootless jail): the booted init mounts, and only its own user namespace keeps that from the host's mounts")
            }
            c.payload = payload.split(separator: " ").map(String.init)
        }
        c.payloadTimeout = payloadTimeout
        if payloadRequired && payload == nil { throw .usage("--init-required needs --init") }
        c.payloadRequired = payloadRequired
        if base != nil && root == nil { throw .usage("--base needs --root (the overlay's mount point)") }
        return c
    }

    func run() throws {
        if version {
            print(JailVersion.text(program: "jaild"), terminator: "")
            return
        }
        do {
            var configuration = try configuration()
            if configuration.root != nil {
                let views = LxcfsViews.choose(configuration.views, directory: configuration.lxcfsDirectory)
                if let error = views.error { throw JailError.startFailed(error) }
                // The log always says it (Supervisor.start); a terminal gets it too, scripts
                // and units no extra line on stderr (as for the log file without syslog).
                if let warning = views.warning, isatty(2) == 1 { JailLogHandler.emitToTerminal(warning) }
                configuration.lxcfsInUse = views.directory
            }
            // A jail whose supervisor died is adopted before anything of its tree is read.
            let supervisor: Supervisor
            if let adopting = Supervisor.forAdoption(configuration) {
                supervisor = adopting
            } else {
                let account = try Preflight.check(configuration)
                if let warning = Preflight.hostNameWarning(configuration, account: account) {
                    JailLogHandler.emitToTerminal(warning)
                }
                supervisor = Supervisor(configuration: configuration, account: account)
            }
            for warning in ServiceSpec.hostPathWarnings(configuration.services, mapsRange: configuration.mapsRange) {
                JailLogHandler.emitToTerminal("warning: \(warning)")
            }
            try PortFilter.checkOverlap(configuration, ownSocket: supervisor.location.socketPath)
            let code = try supervisor.run()
            Glibc.exit(code)
        } catch {
            JailLogHandler.emitToTerminal("\(error)")
            throw ExitCode(1)
        }
    }
}
