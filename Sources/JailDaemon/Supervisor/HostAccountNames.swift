import CJail
import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// A host account that lands in a jail (login shell `jail`, the jail's uid) under a name the
/// jail's own passwd lacks — the seed's own set-up: host `centos`, jail user `work`. Logins
/// work, but `~centos` does not exist inside: Ansible, and scp or rsync paths with `~NAME`,
/// expand it there and write into a literal `~centos/` directory. Said once, at start.
extension Preflight {
    /// The names of host accounts with this uid and `jail` as their shell that the jail's
    /// passwd does not have. Pure: the two passwd texts in, the names out.
    public static func hostNamesMissingInJail(hostPasswd: String, jailPasswd: String, uid: UInt32) -> [String] {
        let inside = Set(PasswdEntry.parseAll(jailPasswd).map(\.name))
        return PasswdEntry.parseAll(hostPasswd).filter { entry in
            entry.uid == uid && entry.shell.split(separator: "/").last == "jail" && !inside.contains(entry.name)
        }.map(\.name)
    }

    /// The one-line warning for `jaild` to print, or nil when the names agree.
    public static func hostNameWarning(_ configuration: JailConfiguration, account: Account) -> String? {
        guard let hostPasswd = try? readText("/etc/passwd") else { return nil }
        let root = configuration.root ?? "/"
        guard let rootFD = try? openDirectoryPath(root) else { return nil }  // a warning only: none without the tree
        defer { rootFD.closeQuietly() }
        guard let jailPasswd = try? readInRoot(rootFD.rawValue, "/etc/passwd", root: root) else { return nil }
        // Only the host's lines with this uid are parsed: the host's passwd has a line per tenant.
        var linesOfUID = ""
        UserRange.scanRecords(hostPasswd) { line, _, uid in
            if uid == UInt64(account.uid) { linesOfUID += String(Substring(line)) + "\n" }
            return false
        }
        let missing = hostNamesMissingInJail(hostPasswd: linesOfUID, jailPasswd: jailPasswd, uid: account.uid)
        guard let name = missing.first else { return nil }
        return "warning: host account '\(name)' (uid \(account.uid)) logs into this jail, whose /etc/passwd has no '\(name)' "
            + "(its user is '\(account.name)'): '~\(name)' does not expand inside (Ansible, scp and rsync paths break); "
            + "add '\(name):x:\(account.uid):\(account.gid)::\(account.home):\(account.shell)' to the jail's /etc/passwd "
            + "as an alias, or use one name"
    }
}

extension Preflight {
    /// A host account that `jaild create Y` made (passwd comments it "jail Y") logs into the
    /// jail of its uid, whichever config starts it: a config of another name with that uid
    /// (one written by hand, or edited) would receive Y's logins. Refused at its start, which
    /// is what lets `jaild create` leave the configs of the jails it made unread in its uid
    /// check (ProvisionPaths.configs(withUID:)). A start without a name (`--uid`, `--config`)
    /// has nothing to compare.
    static func checkUIDOwner(_ configuration: JailConfiguration) throws(JailError) {
        guard let name = configuration.jailName, !configuration.rootless else { return }
        let passwd = try JailError.wrap { () throws(SystemError) in try readFile("/etc/passwd") }
        if let owner = AccountText(passwd).createdJail(withUID: configuration.uid), owner != name {
            throw .startFailed("uid \(configuration.uid) is jail \(owner)'s: its host account \(owner), made by jaild create, "
                + "logs into the jail of that uid; give jail \(name) another uid")
        }
    }
}
