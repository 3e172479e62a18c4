/// Where a jail's socket and pid file live. Shared by jaild (which creates them) and jail
/// (which finds them), so both always agree.
public struct SocketLocation: Equatable, Sendable {
    public static let defaultDirectory = "/run/jail"
    public static let defaultPrefix = defaultDirectory + "/jaild"

    public let socketPath: String
    public let pidPath: String

    /// `PREFIX-UID-GID.sock` and `PREFIX-UID-GID.pid`, as the 2014 version named them.
    public init(prefix: String?, uid: UInt32, gid: UInt32) {
        let base = (prefix ?? Self.defaultPrefix) + "-\(uid)-\(gid)"
        socketPath = base + ".sock"
        pidPath = base + ".pid"
    }

    /// A socket given by its full path (JAIL_SOCKET).
    public init(socketPath: String) {
        self.socketPath = socketPath
        pidPath = (socketPath.hasSuffix(".sock") ? String(socketPath.dropLast(5)) : socketPath) + ".pid"
    }

    /// Where an unprivileged user's jails live: $XDG_RUNTIME_DIR/jail, else
    /// $HOME/.local/state/jail/sockets (beside the rootless log). Never a predictable path in
    /// a shared directory such as /tmp: another local user could create it first and stop the
    /// jail from starting. jaild makes it 0700 and checks it is the user's before every use.
    /// The caller puts HOME in `environment` (from the password database if it has none).
    public static func userDirectory(uid: UInt32, environment: [String: String]) -> String {
        if let runtime = environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") { return runtime + "/jail" }
        let home = environment["HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "/nonexistent-home-of-\(uid)"
        return (home.hasSuffix("/") ? String(home.dropLast()) : home) + "/" + userStateDirectory
    }

    /// Below the home directory, when there is no runtime directory (XDG's state home).
    public static let userStateDirectory = ".local/state/jail/sockets"

    public var directory: String {
        guard let slash = socketPath.lastIndex(of: "/") else { return "." }
        return slash == socketPath.startIndex ? "/" : String(socketPath[..<slash])
    }
}
