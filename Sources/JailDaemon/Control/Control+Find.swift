import JailProtocol

/// Which running jail a SPEC names, for `jaild sessions` and `jaild enter`: its name (NAME of
/// `jaild start NAME`, or UID-GID), UID:GID, its socket path or its pid file path.
extension Control {
    public static func runningJail(_ spec: String) -> JailState? {
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

    public static func noSuchJail(_ spec: String) -> Int32 {
        JailLogHandler.emitToTerminal("no running jail is named '\(spec)': give its name, UID:GID, its socket or its pid file")
        return 2
    }
}
