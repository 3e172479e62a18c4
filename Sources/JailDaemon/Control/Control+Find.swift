import JailProtocol

/// What a SPEC given to a verb names: the one resolver of every verb (status, stop, show,
/// sessions, enter). A SPEC is a running jail's name (its config's NAME or its `--jail-name`,
/// no config needed), NAME of /etc/jail/NAME.conf, a socket path, a pid file path or UID:GID.
public enum JailLookup: Sendable {
    /// A jail that runs (supervised, or its init alive without a supervisor).
    case running(JailState)
    /// No running jail answers to SPEC, but it names where one would be: its pid file.
    case notRunning(pidFile: String)
    /// SPEC names no jail at all.
    case unknown

    /// The pid file of the jail SPEC names, running or not.
    public var pidFile: String? {
        switch self {
        case .running(let state): state.pidFile
        case .notRunning(let pidFile): pidFile
        case .unknown: nil
        }
    }

    public var runningState: JailState? {
        if case .running(let state) = self { return state }
        return nil
    }
}

extension Control {
    public static func lookup(_ spec: String) -> JailLookup {
        if let state = runningJail(spec) { return .running(state) }
        if let pidFile = pidFile(for: spec) { return .notRunning(pidFile: pidFile) }
        return .unknown
    }

    /// A running jail by its name first, then by the pid file the SPEC names, then UID:GID.
    static func runningJail(_ spec: String) -> JailState? {
        // By name through the index first: one state file read, however many jails run.
        if let byName = JailState.running(named: spec) { return byName }
        let alive = JailState.all().filter(\.alive).map(\.state)
        if let byName = alive.first(where: { $0.name == spec }) { return byName }
        if let pidFile = pidFile(for: spec), let byPidFile = alive.first(where: { $0.pidFile == pidFile }) { return byPidFile }
        let ids = spec.split(separator: ":")
        if ids.count == 2, let uid = UInt32(ids[0]), let gid = UInt32(ids[1]) {
            return alive.first { $0.uid == uid && $0.gid == gid }
        }
        return nil
    }

    /// The running jail SPEC names, or nil after one line saying there is none (exit 1).
    public static func runningJailOrSay(_ spec: String) -> JailState? {
        if let state = lookup(spec).runningState { return state }
        JailLogHandler.emitToTerminal("no running jail is named '\(spec)': give its name, UID:GID, its socket or its pid file")
        return nil
    }
}
