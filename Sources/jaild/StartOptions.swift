import ArgumentParser
import JailDaemon
import JailProtocol

#if canImport(Glibc)
import Glibc
#endif

/// `jaild start`'s options as plain values, each with its default: StartCommand declares
/// them for ArgumentParser (names, help, parsers) and hands them over as this; StartArguments
/// fills this in directly, without the cost of ArgumentParser's property wrappers (building
/// StartCommand's 55 of them was a quarter of a millisecond of each start, issue 36).
/// StartArgumentsTests keeps the two equal.
struct StartOptions {
    var configName: String?
    var socketPrefix: String?
    var uid: UInt32?
    var gid: UInt32?
    var userName: String?
    var root: String?
    var shell: String?
    var mounts: [BindMount] = []
    var hostname: String?
    var stopTimeout: Int = 10
    var maxSessions: Int = 256
    var handshakeTimeout: Int = 10
    var bootCommands: [String] = []
    var bootRestart: BootRestart = .no
    var capabilities: [Int] = []
    var memory: UInt64?
    var disk: String?
    var diskInodes: String?
    var diskBackend: String?
    var pids: Int?
    var cpus: Double?
    var resourceLimits: [ResourceLimit] = []
    var ports: PortSet?
    var portsExclusive = false
    var addresses: [String] = []
    var addressShared = false
    var loopback: String?
    var loopbackPool: String?
    var allowHostLoopback = false
    var mapRoot = false
    var acceptEnvironment: [String] = []
    var configFile: String?
    var base: String?
    var noUserns = false
    var usernsPool: UserRangePool?
    var jailName: String?
    var syslog = true
    var views: ViewsMode = .auto
    var lxcfsDirectory: String = LxcfsViews.defaultDirectory
    var cpuset: [Int]?
    var shmSize: UInt64?
    var syslogTarget: String = "/dev/log"
    var services: [ServiceSpec] = []
    var foreground = false
    var version = false
    var rc: String?
    var rcStop: String?
    var rcTimeout: Int = 60
    var rcRequired = false
    var runlevel: String = "2"
    var payload: String?
    var payloadTimeout: Int = 90
    var payloadRequired = false
    var allowAio = false
    var forwardX11 = false
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
        if let loopbackPool {
            do { c.loopbackPool = try LoopbackPool.parse(loopbackPool) } catch { throw .usage(error.description) }
        }
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
