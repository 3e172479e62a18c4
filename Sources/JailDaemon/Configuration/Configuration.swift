import JailProtocol

/// Everything that defines one jail, as jaild's command line gives it.
public struct JailConfiguration: Sendable, Equatable {
    public var uid: UInt32
    /// nil: the primary group of the user in the jail's passwd.
    public var gid: UInt32?
    /// Pick this passwd entry by name (its uid must be `uid`) instead of the first with `uid`.
    public var userName: String?
    /// The prepared root file system; nil keeps the host's root (namespaces only, as in 2014).
    public var root: String?
    /// Overrides the shell of the user's passwd entry.
    public var shell: String?
    public var mounts: [BindMount] = []
    public var hostname: String?
    /// `PREFIX` gives the socket `PREFIX-UID-GID.sock`; nil gives the default location.
    public var socketPrefix: String?
    /// Stay in the foreground and log to stderr.
    public var foreground = false
    /// Seconds between SIGTERM and SIGKILL to the jail's processes at stop.
    public var stopTimeout: Int = 10
    /// Concurrent sessions; the jail's devpts allows twice as many ptys (programs open their own).
    public var maxSessions: Int = 256
    /// Seconds a client has to send its hello before its helper gives up.
    public var handshakeTimeout: Int = 10

    public var maxPtys: Int { maxSessions * 2 }

    /// The overlay's layers when the root is made from a base: `jaild create` lays out
    /// STATE/NAME/{root,upper,work}, so upper and work are found beside the root.
    public var overlay: OverlayLayers? {
        guard let base, let root = root.map(BindMount.normalize) else { return nil }
        let parent = root.lastIndex(of: "/").map { String(root[..<$0]) } ?? ""
        return OverlayLayers(lower: BindMount.normalize(base), upper: parent + "/upper", work: parent + "/work", target: root)
    }

    /// Commands run at start as the jail's user, supervised by init, output to the log.
    public var bootCommands: [String] = []
    /// `--boot-restart`: which boot commands init starts again when they exit (BootRestart).
    public var bootRestart: BootRestart = .no
    /// Ambient capabilities of the jail's programs (numbers from the `--cap` allow-list).
    public var capabilities: [Int] = []
    public var limits = CgroupLimits()
    /// `--disk`, `--disk-inodes`, `--disk-backend`: the jail's own files on the host's disk (docs/disk.md).
    public var disk: DiskLimit?
    public var resourceLimits: [ResourceLimit] = []
    /// The ports the jail's programs may bind (nil: any, as without Jail).
    public var ports: PortSet?
    /// Refuse to start when another running jail owns one of these ports.
    public var portsExclusive = false
    /// `--address`: the host addresses the jail's sockets may use (docs/security.md "A jail's
    /// own addresses"); empty: every address, as without Jail.
    public var addresses: [HostAddress] = []
    /// `--address-shared`: another jail may have one of these addresses if it says so too.
    public var addressShared = false
    /// `--loopback`: the jail's own address in 127.0.0.0/8 (`auto`: chosen from the pool);
    /// nil without --loopback, which a jail with `--address` takes as auto.
    public var loopback: LoopbackChoice?
    public var loopbackPool = LoopbackPool.standard
    /// `--allow-host-loopback`: other 127/8 addresses (the host's services) stay reachable.
    public var allowHostLoopback = false
    /// Run by an unprivileged user: a user namespace maps that user (only) into the jail.
    public var rootless = false
    /// Rootless: the user is uid 0 inside instead of their own uid.
    public var mapRoot = false
    /// Which of the client's environment variables sessions receive (`--accept-env`).
    public var environmentPolicy = EnvironmentPolicy()
    /// `--rc`: run once at start as root inside, through /bin/sh -c; the start waits for it.
    public var rc: String?
    /// `--rc-stop`: run at stop as root inside, before everything left gets SIGTERM.
    public var rcStop: String?
    /// Seconds the start waits for the rc before it kills it and counts it as failed.
    public var rcTimeout: Int = 60
    /// A failing rc fails the start (everything is undone) instead of being logged.
    public var rcRequired = false
    /// `--runlevel N`: the RUN_LVL record init writes to the jail's /run/utmp at start (a jail
    /// with a root and without `--init`), so `runlevel` answers and invoke-rc.d starts services.
    public var runlevel: Character = "2"
    /// `--init PATH [ARGS]`: the distribution's init (systemd), run as PID 1 of a nested PID
    /// namespace below jaild's init (Init/Payload*.swift, docs/security.md "The payload"); nil:
    /// none, jaild's init is the jail's only init.
    public var payload: [String]?
    /// `--init-timeout`: seconds the start waits for the payload's READY=1.
    public var payloadTimeout: Int = 90
    /// `--init-required`: a payload not ready within the timeout fails the start (undone).
    public var payloadRequired = false
    /// `--base DIR`: ROOT is a copy-on-write overlay mounted at each start, DIR the read-only
    /// lower layer, ROOT's siblings `upper/` and `work/` the jail's own (see `overlay`).
    public var base: String?
    /// Kernel AIO (io_setup, io_submit) allowed: it draws on the host-wide fs.aio-max-nr.
    public var allowAio = false
    /// The jail's name in session records and syslog tags: NAME of `jaild start NAME`, else
    /// nil, which means `UID-GID` of the jail account (see `name(account:)`).
    public var jailName: String?
    /// Serve /dev/log inside (default; `--no-syslog` turns it off) and relay each message to
    /// `syslogTarget`, tagged `jail/NAME`; with nobody listening there, to the supervisor's log
    /// (the jail's file under /var/log/jail when the host has no syslog). Only with a root:
    /// without one the jail has the host's /dev/log.
    public var syslog = true
    /// `--views`: lxcfs's files over the jail's /proc/meminfo, cpuinfo, … (ViewsMode).
    public var views = ViewsMode.auto
    /// Where lxcfs is mounted (`--lxcfs-directory`).
    public var lxcfsDirectory = LxcfsViews.defaultDirectory
    /// Set by the supervisor just before the clone: the lxcfs directory whose files the mount
    /// plan binds (nil: the host's own /proc files).
    public var lxcfsInUse: String?
    /// `--cpuset LIST`: the CPUs of the jail's programs; nil: ceil(--cpus) CPUs picked at start.
    public var cpuset: [Int]?
    /// `--shm-size`: the size of the jail's /dev/shm (see `shmBytes`).
    public var shmSize: UInt64?
    /// /dev/shm: `--shm-size`, else half of `--memory` (as a VM's tmpfs defaults to half its
    /// RAM: a jail's POSIX shared memory can never be more than its memory anyway, and half
    /// leaves room for the processes using it), else 64 MiB, as before. Whatever the size,
    /// its pages are charged to the memory cgroup of the program that writes them.
    public var shmBytes: UInt64 {
        if let shmSize { return shmSize }
        if let memory = limits.memory { return max(1 << 20, memory / 2) }
        return 64 << 20
    }
    /// `--forward-x11`: a session whose client offers an X11 cookie (ssh -X) gets DISPLAY and
    /// its own Xauthority file inside.
    public var forwardX11 = false
    /// `--forward-agent` (default; `--no-forward-agent` turns it off): a session whose client
    /// has SSH_AUTH_SOCK gets an agent socket inside, carried over the session's connection.
    public var forwardAgent = true
    public var syslogTarget = "/dev/log"
    /// `--service`: host unix sockets served inside the jail through the service relay.
    public var services: [ServiceSpec] = []
    /// jaild's version, for the jail's /run/jail/info.json.
    public var jaildVersion = ""

    /// What session records, `jaild sessions` and syslog tags call this jail.
    public func name(account: Account) -> String {
        jailName ?? "\(account.uid)-\(account.gid)"
    }
    /// Started by root: a user namespace maps root inside (and every id but the user's own)
    /// to a host range of the jail's own; `--no-userns` turns it off (root inside is host root).
    public var userNamespace = true
    /// Where those ranges come from.
    public var userNamespacePool = UserRangePool.standard
    /// The host's /proc/sys/user limits, set by the supervisor just before the clone for init
    /// to write in the jail's user namespace (MountPlan's `limitUserNamespace`).
    public var userNamespaceLimits: [UserNamespaceLimit] = []

    /// A jail with its own root gets a cgroup namespace and its own /sys/fs/cgroup
    /// (Init/CgroupView.swift); without a root it shares the host's file system anyway.
    public var cgroupNamespace: Bool { root != nil }

    /// root's user namespace (not the rootless one): ranges, idmapped rootfs, private root.
    /// A root on a base too: its overlay is mounted over idmapped layers (`overlayLayers`).
    public var mapsRange: Bool { userNamespace && !rootless }
    /// Either kind of user namespace: no mknod, no fresh sysfs.
    public var inUserNamespace: Bool { rootless || mapsRange }

    public init(uid: UInt32) {
        self.uid = uid
    }
}

/// `-m JPATH=HPATH[:ro]`: a host path bind-mounted into the jail.
public struct BindMount: Sendable, Equatable {
    public var jailPath: String
    public var hostPath: String
    public var readOnly: Bool
    /// `:suid`: setuid bits and device files of the host path work inside (unsafe: without a
    /// user namespace, a setuid-root file there makes its runner host root). Default nosuid,nodev.
    public var allowSetuid = false

    public init(jailPath: String, hostPath: String, readOnly: Bool, allowSetuid: Bool = false) {
        self.jailPath = jailPath
        self.hostPath = hostPath
        self.readOnly = readOnly
        self.allowSetuid = allowSetuid
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case missingEquals(String)
        case notAbsolute(String)
        case unknownOption(String)

        public var description: String {
            switch self {
            case .missingEquals(let s): "mount '\(s)': expected JPATH=HPATH[:ro][,suid]"
            case .notAbsolute(let s): "mount path '\(s)' must be absolute"
            case .unknownOption(let s): "mount option '\(s)' is unknown (only 'ro', 'rw' and 'suid')"
            }
        }
    }

    /// Parses `JPATH=HPATH`, then optionally `:ro`, `:rw`, `:suid` or `:ro,suid`.
    public static func parse(_ spec: String) throws(ParseError) -> BindMount {
        guard let equals = spec.firstIndex(of: "=") else { throw .missingEquals(spec) }
        let jailPath = String(spec[..<equals])
        var hostPath = String(spec[spec.index(after: equals)...])
        var readOnly = false
        var allowSetuid = false
        if let colon = hostPath.lastIndex(of: ":") {
            for option in hostPath[hostPath.index(after: colon)...].split(separator: ",", omittingEmptySubsequences: false) {
                switch option {
                case "ro": readOnly = true
                case "rw": readOnly = false
                case "suid": allowSetuid = true
                default: throw .unknownOption(String(option))
                }
            }
            hostPath = String(hostPath[..<colon])
        }
        for path in [jailPath, hostPath] where !path.hasPrefix("/") { throw .notAbsolute(path) }
        return BindMount(jailPath: normalize(jailPath), hostPath: hostPath, readOnly: readOnly, allowSetuid: allowSetuid)
    }

    /// `/a//b/./c/` → `/a/b/c`. `..` is kept: the mount code refuses it.
    static func normalize(_ path: String) -> String {
        // A path that is normal already is returned as it is, unsplit: `jaild list` asks this
        // of every jail's root (DiskUsage), and splitting by Character was 4 % of its time.
        if isNormal(path) { return path }
        return "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }

    /// Printable ASCII (a Character is a byte), absolute, one slash between names, none at
    /// the end, no `.` name: what `normalize` makes of it is itself.
    static func isNormal(_ path: String) -> Bool {
        let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
        var (before, previous): (UInt8, UInt8) = (0, 0)
        for byte in path.utf8 {
            guard byte >= 0x20 && byte < 0x7f, !(byte == slash && previous == slash),
                  !(byte == slash && previous == dot && before == slash) else { return false }
            (before, previous) = (previous, byte)
        }
        guard path.utf8.first == slash else { return false }
        return path.utf8.count == 1 || (previous != slash && !(previous == dot && before == slash))
    }
}

/// The layers of a jail's copy-on-write root.
public struct OverlayLayers: Sendable, Equatable {
    public var lower: String
    public var upper: String
    public var work: String
    /// Where the merged tree is mounted: the jail's root.
    public var target: String

    /// overlayfs takes its layers as one comma- and colon-separated option string.
    public var unsafeCharacter: Character? {
        for path in [lower, upper, work] {
            if let c = path.first(where: { $0 == "," || $0 == ":" || $0 == "\\" }) { return c }
        }
        return nil
    }
}

/// `--boot-restart`, as systemd's `Restart=`: `no` (the default there too, and what jaild did
/// before the option: a boot command that exits is logged, not restarted), `on-failure` (a
/// non-zero status or a signal), `always`.
public enum BootRestart: String, Sendable, CaseIterable {
    case no
    case onFailure = "on-failure"
    case always

    /// Whether a boot command that ended with `status` (init's code: 128+N after signal N) starts again.
    public func restarts(status: Int32) -> Bool {
        switch self {
        case .no: false
        case .onFailure: status != 0
        case .always: true
        }
    }
}

/// `--loopback 127.X.Y.Z` or `--loopback auto`.
public enum LoopbackChoice: Equatable, Sendable {
    case auto
    case fixed(HostAddress)

    public static func parse(_ text: String) -> Result<LoopbackChoice, JailError> {
        if text == "auto" { return .success(.auto) }
        guard let address = HostAddress.parse(text) else {
            return .failure(.usage("--loopback '\(text)' is not an IPv4 address in 127.0.0.0/8 or 'auto'"))
        }
        if let problem = address.loopbackProblem { return .failure(.usage("--loopback: \(problem)")) }
        return .success(.fixed(address))
    }
}

extension JailConfiguration {
    /// A jail with an address of its own gets a loopback address of its own too.
    var loopbackChoice: LoopbackChoice? { loopback ?? (addresses.isEmpty ? nil : .auto) }
}

