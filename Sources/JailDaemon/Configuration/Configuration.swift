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

    /// Commands run at start as the jail's user, supervised by init, output to the log.
    public var bootCommands: [String] = []
    /// Ambient capabilities of the jail's programs (numbers from the `--cap` allow-list).
    public var capabilities: [Int] = []
    public var limits = CgroupLimits()
    public var resourceLimits: [ResourceLimit] = []
    /// The ports the jail's programs may bind (nil: any, as without Jail).
    public var ports: PortSet?
    /// Refuse to start when another running jail owns one of these ports.
    public var portsExclusive = false
    /// Run by an unprivileged user: a user namespace maps that user (only) into the jail.
    public var rootless = false
    /// Rootless: the user is uid 0 inside instead of their own uid.
    public var mapRoot = false
    /// Which of the client's environment variables sessions receive (`--accept-env`).
    public var environmentPolicy = EnvironmentPolicy()

    public init(uid: UInt32) {
        self.uid = uid
    }
}

/// `-m JPATH=HPATH[:ro]`: a host path bind-mounted into the jail.
public struct BindMount: Sendable, Equatable {
    public var jailPath: String
    public var hostPath: String
    public var readOnly: Bool

    public init(jailPath: String, hostPath: String, readOnly: Bool) {
        self.jailPath = jailPath
        self.hostPath = hostPath
        self.readOnly = readOnly
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case missingEquals(String)
        case notAbsolute(String)
        case unknownOption(String)

        public var description: String {
            switch self {
            case .missingEquals(let s): "mount '\(s)': expected JPATH=HPATH[:ro]"
            case .notAbsolute(let s): "mount path '\(s)' must be absolute"
            case .unknownOption(let s): "mount option '\(s)' is unknown (only 'ro' and 'rw')"
            }
        }
    }

    /// Parses `JPATH=HPATH`, `JPATH=HPATH:ro` or `JPATH=HPATH:rw`.
    public static func parse(_ spec: String) throws(ParseError) -> BindMount {
        guard let equals = spec.firstIndex(of: "=") else { throw .missingEquals(spec) }
        let jailPath = String(spec[..<equals])
        var hostPath = String(spec[spec.index(after: equals)...])
        var readOnly = false
        if let colon = hostPath.lastIndex(of: ":") {
            let option = String(hostPath[hostPath.index(after: colon)...])
            switch option {
            case "ro": readOnly = true
            case "rw": readOnly = false
            default: throw .unknownOption(option)
            }
            hostPath = String(hostPath[..<colon])
        }
        for path in [jailPath, hostPath] where !path.hasPrefix("/") { throw .notAbsolute(path) }
        return BindMount(jailPath: normalize(jailPath), hostPath: hostPath, readOnly: readOnly)
    }

    /// `/a//b/./c/` → `/a/b/c`. `..` is kept: the mount code refuses it.
    static func normalize(_ path: String) -> String {
        "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }
}
