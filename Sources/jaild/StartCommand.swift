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

    /// The options as values: what a start runs on, whichever parse read them (StartArguments
    /// reads them without ArgumentParser).
    var options: StartOptions {
        var o = StartOptions()
        o.configName = configName
        o.socketPrefix = socketPrefix
        o.uid = uid
        o.gid = gid
        o.userName = userName
        o.root = root
        o.shell = shell
        o.mounts = mounts
        o.hostname = hostname
        o.stopTimeout = stopTimeout
        o.maxSessions = maxSessions
        o.handshakeTimeout = handshakeTimeout
        o.bootCommands = bootCommands
        o.bootRestart = bootRestart
        o.capabilities = capabilities
        o.memory = memory
        o.disk = disk
        o.diskInodes = diskInodes
        o.diskBackend = diskBackend
        o.pids = pids
        o.cpus = cpus
        o.resourceLimits = resourceLimits
        o.ports = ports
        o.portsExclusive = portsExclusive
        o.addresses = addresses
        o.addressShared = addressShared
        o.loopback = loopback
        o.loopbackPool = loopbackPool
        o.allowHostLoopback = allowHostLoopback
        o.mapRoot = mapRoot
        o.acceptEnvironment = acceptEnvironment
        o.configFile = configFile
        o.base = base
        o.noUserns = noUserns
        o.usernsPool = usernsPool
        o.jailName = jailName
        o.syslog = syslog
        o.views = views
        o.lxcfsDirectory = lxcfsDirectory
        o.cpuset = cpuset
        o.shmSize = shmSize
        o.syslogTarget = syslogTarget
        o.services = services
        o.foreground = foreground
        o.version = version
        o.rc = rc
        o.rcStop = rcStop
        o.rcTimeout = rcTimeout
        o.rcRequired = rcRequired
        o.runlevel = runlevel
        o.payload = payload
        o.payloadTimeout = payloadTimeout
        o.payloadRequired = payloadRequired
        o.allowAio = allowAio
        o.forwardX11 = forwardX11
        o.forwardAgent = forwardAgent
        return o
    }

    func validate() throws { try options.validate() }

    func run() throws { try options.run() }
}
