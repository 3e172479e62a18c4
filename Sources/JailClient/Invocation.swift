import JailProtocol
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// How `jail` was started. It takes no options of its own: like any login shell, every
/// argument goes to the jail user's shell (`jail -c 'cmd'`).
public struct Invocation: Equatable, Sendable {
    /// Start the jail user's shell as a login shell: jail was started as one (argv[0] begins
    /// with '-', as login, su - and sshd do), or with no arguments at all.
    public var login: Bool
    /// The arguments as the bytes they were (CommandLine.unsafeArgv): a file name that scp or
    /// rsync passes need not be UTF-8.
    public var argumentBytes: [[UInt8]]

    public init(login: Bool, arguments: [String]) {
        self.login = login
        self.argumentBytes = arguments.map { Array($0.utf8) }
    }

    public init(argv: [String]) {
        self.init(argvBytes: argv.map { Array($0.utf8) })
    }

    public init(argvBytes: [[UInt8]]) {
        let zero = argvBytes.first ?? Array("jail".utf8)
        argumentBytes = Array(argvBytes.dropFirst())
        login = zero.first == UInt8(ascii: "-") || argumentBytes.isEmpty
    }

    /// The socket to use: JAIL_SOCKET (a full path), else SOCKET (a prefix, as in 2014), else
    /// the system location (a jail root started for this uid and gid); for a user without one
    /// there, the user's own rootless jail if it exists.
    public static func socketLocation(environment: [String: String], uid: UInt32, gid: UInt32,
                                      exists: (String) -> Bool = { access($0, F_OK) == 0 }) -> SocketLocation {
        if let path = environment["JAIL_SOCKET"], !path.isEmpty { return SocketLocation(socketPath: path) }
        if let prefix = environment["SOCKET"], !prefix.isEmpty { return SocketLocation(prefix: prefix, uid: uid, gid: gid) }
        let system = SocketLocation(prefix: nil, uid: uid, gid: gid)
        if uid != 0 && !exists(system.socketPath) {
            var environment = environment
            if environment["HOME"] == nil, let home = PasswdEntry.hostHome(ofUID: uid) { environment["HOME"] = home }
            let prefix = SocketLocation.userDirectory(uid: uid, environment: environment) + "/jaild"
            let user = SocketLocation(prefix: prefix, uid: uid, gid: gid)
            if exists(user.socketPath) { return user }
        }
        return system
    }

    /// The variables a jail session may receive: any the jail's policy could accept (the
    /// operator may accept more than the defaults with --accept-env); the helper filters with
    /// the jail's own policy. Bounded by the protocol's limits, so a huge environment cannot
    /// make the hello fail.
    public static func offeredEnvironment(_ environment: [String: String], limits: Limits = .standard) -> [String] {
        let offered = environment.filter { name, value in
            EnvironmentPolicy.isOffered(name) && name.utf8.count + value.utf8.count < limits.maxStringBytes / 16
        }.map { "\($0.key)=\($0.value)" }.sorted()
        return Array(offered.prefix(limits.maxEnvironment / 2))
    }

    /// The same choice over the environment's raw NAME=VALUE byte strings (environ): a value
    /// need not be UTF-8 and travels unchanged; a name must be text to match a policy. The
    /// first of repeated names wins, as for getenv.
    public static func offeredEnvironment(raw: [[UInt8]], limits: Limits = .standard) -> [[UInt8]] {
        var seen = Set<String>()
        var offered: [[UInt8]] = []
        for pair in raw where pair.count < limits.maxStringBytes / 16 {
            guard let equals = pair.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let nameBytes = pair[..<equals]
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard name.utf8.elementsEqual(nameBytes), EnvironmentPolicy.isOffered(name), !seen.contains(name) else { continue }
            seen.insert(name)
            offered.append(pair)
        }
        return Array(offered.sorted { $0.lexicographicallyPrecedes($1) }.prefix(limits.maxEnvironment / 2))
    }
}
