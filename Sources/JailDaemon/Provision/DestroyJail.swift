import JailProtocol
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// `jaild destroy NAME --yes [--keep-data]`: stops the jail if it runs, then removes its
/// config, its state directory (root mount point, upper and work; with `keepData` the upper
/// (a copy's root, the image or the subvolume) stays with a record for a later create
/// (KeptData), as do its id range and its log file), the host account (out of the group `jail` too,
/// which stays, as the sshd drop-in does) and its own group, its home, and the /etc/shells
/// line of its login shell when no other account uses it. The base is never touched: the state directory is
/// removed without crossing into another file system, and only after no mount is left in it.
extension Provision {
    public static func destroy(name: String, keepData: Bool, paths: ProvisionPaths) throws(ProvisionError) -> String {
        guard geteuid() == 0 else { throw ProvisionError.refused("jaild destroy must run as root") }
        guard ProvisionPaths.isValidName(name) else { throw ProvisionError.refused("'\(name)' is not a jail name") }
        let configPath = paths.config(name)
        let entries: [ConfigFile.Entry]?
        var configText = ""
        if try exists(configPath) {
            do {
                configText = try readText(configPath)
                entries = try ConfigFile.parse(configText, path: configPath)
            } catch {
                throw ProvisionError.cause("cannot read \(configPath)", error)
            }
        } else {
            entries = nil
        }
        // Data kept by an earlier --keep-data: its record names the ids (the config is gone).
        let kept = try KeptData.load(jailDirectory: paths.jail(name))
        let account = AccountText.passwdEntry(try HostAccounts.passwdText().line(named: name))
        let hasState = try exists(paths.jail(name))
        guard entries != nil || hasState || account != nil else {
            throw ProvisionError.refused("no jail \(name): neither \(configPath) nor \(paths.jail(name)) exists")
        }
        let uid = entries?.value("uid").flatMap { UInt32($0) } ?? kept?.uid
        let configGid = entries?.value("gid").flatMap { UInt32($0) } ?? kept?.gid
        let socketPrefix = entries == nil ? kept?.socketPrefix : entries?.value("socket-prefix")
        // Only an account that is this jail's: its uid, or (config gone) a `jail` login shell.
        let ownAccount = account.flatMap { a in
            (uid.map { $0 == a.uid } ?? a.shell.hasSuffix("/jail")) ? a : nil
        }

        if let uid {
            let gid = configGid ?? ownAccount?.gid ?? uid
            let location = SocketLocation(prefix: socketPrefix, uid: uid, gid: gid)
            let jailName = Supervisor.cgroupName(prefix: socketPrefix, uid: uid, gid: gid)
            guard Control.stop(location.pidPath, stateName: jailName) == 0 else {
                throw ProvisionError.refused("cannot stop jail \(name); nothing removed")
            }
            if !keepData {
                do { try UserRangeStore().release(name: jailName, socket: location.socketPath) } catch {
                    throw ProvisionError.refused("cannot give back the id range of jail \(name): \(error); nothing removed")
                }
                do { try LoopbackStore().release(socket: location.socketPath) } catch {
                    throw ProvisionError.refused("cannot give back the loopback address of jail \(name): \(error); nothing removed")
                }
            }
        }
        let jailDirectory = paths.jail(name)
        if let mounted = try mountPoints().first(where: { $0 == jailDirectory || $0.hasPrefix(jailDirectory + "/") }) {
            throw ProvisionError.refused("\(mounted) is still mounted; nothing removed")
        }

        // What `jaild create NAME` checks before it reuses the data: written before anything
        // is removed, so a failure leaves the jail as it was.
        // A config that names no uid or base (not written by create) keeps its data without one.
        var recorded = kept != nil
        if keepData, hasState, let entries, let record = try KeptData.of(config: entries, configText: configText, jailDirectory: jailDirectory) {
            try record.save(jailDirectory: jailDirectory)
            recorded = true
        }
        let copy = (kept?.copy ?? false) || (entries != nil && entries?.value("base") == nil)

        let diskData: String?
        do { diskData = hasState ? try DiskStorage.release(directory: jailDirectory, keepData: keepData) : nil } catch {
            throw ProvisionError.from(error)
        }

        // The supervisor's own log file (written where no syslog listens), rotations too.
        if !keepData, let uid, socketPrefix == nil {
            let gid = configGid ?? uid
            let log = LogFile(name: "jail-\(uid)-\(gid)").path
            // Only a log: one that stays is said, and the destroy goes on.
            for suffix in ["", ".1", ".2", ".3"] {
                do { try removeFile(log + suffix) } catch { JailLogHandler.emitToTerminal("warning: cannot remove \(error)") }
            }
        }
        if entries != nil {
            do { try removeFile(configPath) } catch { throw .system(error) }
        }
        if hasState {
            // A copy's data is its root; an overlay's, its upper (the root only a mount point).
            let removed = keepData
                ? removeTree(paths.work(name)) && (copy || removeTree(paths.root(name)))
                : removeTree(jailDirectory)
            if !removed { throw ProvisionError.refused("cannot remove \(keepData ? paths.work(name) : jailDirectory)") }
        }
        if let ownAccount {
            try AccountFiles.remove(name, ownGroup: ownAccount.gid)
            if try HostAccounts.passwdText().line(whereField: 6, is: ownAccount.shell) == nil,
               try HostAccounts.shells().contains(ownAccount.shell) {
                try HostAccounts.removeShell(ownAccount.shell)
            }
        }
        removeTree(paths.home(name))
        // Only if it is empty: the homes of other tenants stay (ENOTEMPTY is that answer).
        do { try removeDirectory(paths.homes) } catch where error.errno == .directoryNotEmpty {} catch { throw .system(error) }
        let files = diskData ?? (copy ? paths.root(name) : paths.upper(name))
        let reuse = recorded ? "jaild create \(name) with the same uid and base reuses them" : "no record for jaild create to reuse them"
        return keepData ? "destroyed jail \(name); its files stay in \(files) (\(reuse))" : "destroyed jail \(name)"
    }

    /// Mount points of this mount namespace (mountinfo's fifth field, octal escapes undone).
    /// Unreadable, it is an error: destroy must not remove a tree it cannot see is unmounted.
    static func mountPoints() throws(ProvisionError) -> [String] {
        let text: String
        do { text = try readText("/proc/self/mountinfo") } catch { throw .system(error) }
        return MountInfoEntry.parseAll(text).map(\.mountPoint)
    }
}
