import CJail
import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `jaild create NAME --uid UID --base BASE …`: a tenant in one command, all or nothing.
///
/// Everything is checked first (nothing is touched until then), and every step that changes
/// the host registers how to undo it; on any failure the undo list runs backwards, so the host
/// is as it was. The steps: STATE/NAME (0700) with the root mount point and the overlay's
/// upper and work directories (or a full copy of the base with `copy`); the jail user written
/// into the merged tree through a detached overlay mount (so the kernel copies up what changes
/// and the base is never written); the sshd drop-in and the host group `jail` of every tenant
/// when absent (SshdAccess); the host group and account; its home and key (led by `restrict`);
/// /etc/shells; last the config file that `jaild start NAME` reads.
public struct JailCreation: Sendable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32?
    /// A name under STATE/bases, or a path.
    public var base: String
    public var user = "work"
    public var keyFile: String?
    public var shell: String?
    public var copy = false
    /// Further jaild options (config keys and values), already checked by the caller.
    public var options: [(key: String, value: String)] = []
    /// The `jail` client that becomes the host account's login shell.
    public var jailBinary: String

    public init(name: String, uid: UInt32, base: String, jailBinary: String) {
        self.name = name
        self.uid = uid
        self.base = base
        self.jailBinary = jailBinary
    }

    /// Whether a switch among `options` is on, as jaild will read the config: the last value
    /// given wins, else its default (forward-agent is on unless turned off).
    func isOn(_ key: String) -> Bool {
        guard let value = options.last(where: { $0.key == key })?.value.lowercased() else {
            return ConfigFile.defaultOn.contains(key)
        }
        return ["yes", "true", "1", "on"].contains(value)
    }
}

public enum Provision {
    /// Creates the jail; returns the line to print.
    public static func create(_ request: JailCreation, paths: ProvisionPaths) throws(ProvisionError) -> String {
        var plan = try check(request, paths: paths)
        plan.disk = try diskLimit(request, paths: paths, kept: plan.kept)
        // Ctrl-C or a TERM waits until the jail is made or undone: never half of it. (A program
        // run meanwhile, useradd, gets the signal and fails, which undoes the rest.)
        let blocked: BlockedSignals
        do { blocked = try BlockedSignals([SIGINT, SIGTERM, SIGHUP, SIGQUIT]) } catch { throw .system(error) }
        defer { blocked.restore() }
        var undo: [() -> Void] = []
        let dropIn: SshdAccess.DropIn
        do {
            dropIn = try carryOut(plan, paths: paths, undo: &undo)
        } catch {
            for step in undo.reversed() { step() }
            throw error
        }
        let how = request.copy ? "a copy of" : "an overlay of"
        let reused = plan.kept == nil ? "" : " on the data kept in \(paths.jail(request.name))"
        let created = "created jail \(request.name) (uid \(plan.uid), gid \(plan.gid), user \(request.user)): \(how) \(plan.base)\(reused); "
            + "start it with: jaild start \(request.name)"
        return ([created] + [SshdAccess.notice(dropIn, name: request.name)].compactMap { $0 }).joined(separator: "\n")
    }

    /// A step of a failed create's undo: one whose failure leaves something on the host is
    /// said on stderr, one line each (the create has failed already: exit 1).
    static func undoing(_ what: String, _ step: () throws(ProvisionError) -> Void) {
        do { try step() } catch { JailLogHandler.emitToTerminal("could not undo \(what): \(error)") }
    }

    /// What was checked, resolved.
    struct Plan {
        let request: JailCreation
        let uid: UInt32
        let gid: UInt32
        let makeHostGroup: Bool
        /// The host group `jail` of every tenant (the sshd drop-in's Match) is made by the first create.
        let makeTenantGroup: Bool
        let base: String
        let key: String?
        /// The key lines for the host's sshd: `restrict` and what the jail's sessions use.
        let hostKey: String?
        let home: String
        let shell: String
        /// `--disk`, its backend chosen (nil: none).
        var disk: DiskLimit? = nil
        /// The data `jaild destroy --keep-data` left in STATE/NAME, reused (nil: a new jail).
        var kept: KeptData? = nil
    }

    static func check(_ r: JailCreation, paths: ProvisionPaths) throws(ProvisionError) -> Plan {
        guard geteuid() == 0 else { throw ProvisionError.refused("jaild create must run as root") }
        guard ProvisionPaths.isValidName(r.name) else {
            throw ProvisionError.refused("jail name '\(r.name)' is not a valid account name (a-z, 0-9, _ and -, at most 32, not bases or home)")
        }
        guard ProvisionPaths.isValidName(r.user) else { throw ProvisionError.refused("user name '\(r.user)' is not a valid account name") }
        guard r.uid != 0 else { throw ProvisionError.refused("uid 0 is not allowed: a jail for root would give away the whole jail") }
        // Looked up on the bytes of the files: parsing every entry cost milliseconds at 2,000 tenants.
        let users = try HostAccounts.passwdText()
        let groups = try HostAccounts.groupText()
        if users.contains(name: r.name) { throw ProvisionError.refused("\(r.name) is taken: a host account of that name exists") }
        if groups.contains(name: r.name) { throw ProvisionError.refused("\(r.name) is taken: a host group of that name exists") }
        if r.name == SshdAccess.tenantGroup {
            throw ProvisionError.refused("\(r.name) is taken: it is the host group of every tenant (sshd's Match Group \(r.name))")
        }
        if try exists(paths.config(r.name)) {
            throw ProvisionError.refused("\(r.name) is taken: \(paths.config(r.name)) exists")
        }
        // STATE/NAME left by `jaild destroy --keep-data` is reused (checked below); anything else there is another's.
        let kept = try keptData(of: r.name, paths: paths)
        if try exists(paths.home(r.name)) { throw ProvisionError.refused("\(r.name) is taken: \(paths.home(r.name)) exists") }
        if let other = AccountText.passwdEntry(users.line(whereField: 2, is: "\(r.uid)")) {
            throw ProvisionError.refused("uid \(r.uid) is in use by host account \(other.name)")
        }
        if let holder = try paths.configs(withUID: r.uid, created: users.namesOfCreatedJails).first {
            throw ProvisionError.refused("uid \(r.uid) is in use by jail \(holder) (\(paths.config(holder)))")
        }
        if let running = JailState.all(uid: r.uid).first(where: { $0.alive }) {
            throw ProvisionError.refused("uid \(r.uid) is in use by the running jail on \(running.state.socket)")
        }
        let gid = r.gid ?? r.uid
        guard gid != 0 else { throw ProvisionError.refused("gid 0 is not allowed: the host account would be in root's group") }
        let existingGroup = AccountText.groupEntry(groups.line(whereField: 2, is: "\(gid)"))
        if let existingGroup, r.gid == nil {
            throw ProvisionError.refused("gid \(gid) is in use by host group \(existingGroup.name) (give --gid \(gid) to share it)")
        }
        let base = try resolveBase(r.base, paths: paths)
        if let problem = kept?.mismatch(r, gid: gid, base: base, name: r.name) { throw ProvisionError.refused(problem) }
        let key = try r.keyFile.map { path throws(ProvisionError) in try readKey(path) }
        do { try checkAccess(r.jailBinary, X_OK) } catch {
            throw ProvisionError.failed("the jail client \(r.jailBinary) (the login shell) is not executable", error)
        }
        // The base's own accounts: the user must not collide, the shell must exist.
        let rootFD: FileDescriptor
        do { rootFD = try openDirectoryPath(base) } catch { throw ProvisionError.system(error) }
        defer { closeDescriptor(rootFD.rawValue) }
        let tree = JailTree(root: rootFD, description: base)
        let passwd: String?
        do { passwd = try tree.text(at: "/etc/passwd") } catch { throw ProvisionError.cause("base \(base)", error) }
        guard let passwd else { throw ProvisionError.refused("base \(base) is not a root file system: it has no /etc/passwd") }
        let aliases = r.name == r.user ? [] : [r.name]
        do { try JailUser(name: r.user, uid: r.uid, gid: gid, home: "", shell: "").checkConflicts(passwd: passwd, aliases: aliases) } catch {
            throw ProvisionError.cause("base \(base)", error)
        }
        let existing = PasswdEntry.parseAll(passwd).first { $0.name == r.user }
        let hasBash: Bool
        do { hasBash = try tree.status("/bin/bash") != nil } catch { throw ProvisionError.cause("base \(base)", error) }
        let shell = r.shell ?? existing.map(\.shell).flatMap { $0.isEmpty ? nil : $0 } ?? (hasBash ? "/bin/bash" : "/bin/sh")
        guard shell.hasPrefix("/") else { throw ProvisionError.refused("shell \(shell) must be an absolute path") }
        // Followed as exec will follow it: a symlink to the real shell is a shell.
        do { closeDescriptor(try openInRoot(shell, root: rootFD, CJ_O_PATH, name: base + shell).rawValue) } catch {
            guard error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory else { throw ProvisionError.cause("base \(base)", error) }
            throw ProvisionError.refused("shell \(shell) does not exist in base \(base)")
        }
        let home = existing.map(\.home).flatMap { $0.isEmpty || $0 == "/" ? nil : $0 } ?? "/home/\(r.user)"
        let hostKey = key.map {
            SshdAccess.restrictedKeys($0, forwardAgent: r.isOn("forward-agent"), forwardX11: r.isOn("forward-x11"))
        }
        return Plan(request: r, uid: r.uid, gid: gid, makeHostGroup: existingGroup == nil,
                    makeTenantGroup: !groups.contains(name: SshdAccess.tenantGroup), base: base, key: key,
                    hostKey: hostKey, home: home, shell: shell, kept: kept)
    }

    /// `debian` is STATE/bases/debian; anything with a slash is a path. The result is a real
    /// directory path (symlinks resolved once, here) with /etc/passwd.
    static func resolveBase(_ spec: String, paths: ProvisionPaths) throws(ProvisionError) -> String {
        let path = spec.contains("/") ? spec : "\(paths.bases)/\(spec)"
        let real: String
        do { real = try canonicalPath(path) } catch { throw ProvisionError.refused("base \(spec) does not exist (\(path): \(error.errno))") }
        let info: stat?
        do { info = try fileStatusFollowingLinks(real) } catch { throw ProvisionError.system(error) }
        guard let info, isDirectory(info) else { throw ProvisionError.refused("base \(real) is not a directory") }
        if let c = real.first(where: { $0 == "," || $0 == ":" || $0 == "\\" }) {
            throw ProvisionError.refused("base path \(real) must not contain '\(c)' (overlayfs separates layers with it)")
        }
        return real
    }

    static func readKey(_ path: String) throws(ProvisionError) -> String {
        let text: String
        do { text = try readText(path) } catch { throw ProvisionError.failed("cannot read key \(path)", error) }
        let lines = text.split(separator: "\n").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        // Each line: [options] TYPE BASE64 [comment], TYPE one of OpenSSH's key types.
        let types = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-"]
        let isKey = { (line: Substring) -> Bool in
            let fields = line.split(separator: " ")
            guard let index = fields.firstIndex(where: { f in types.contains { f.hasPrefix($0) } }) else { return false }
            return index + 1 < fields.count && fields[index + 1].hasPrefix("AAAA")
        }
        guard !lines.isEmpty, text.utf8.count < 65536, lines.allSatisfy(isKey) else {
            throw ProvisionError.refused("key \(path) is not an ssh public key file (lines like 'ssh-ed25519 AAAA… comment')")
        }
        if let option = lines.lazy.compactMap(SshdAccess.grantingOption).first {
            throw ProvisionError.refused("key \(path) has the option '\(option)': jaild create writes the options that lead "
                + "the host's keys itself (\(SshdAccess.keyOptions(forwardAgent: true, forwardX11: true)))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func carryOut(_ plan: Plan, paths: ProvisionPaths, undo: inout [() -> Void]) throws(ProvisionError) -> SshdAccess.DropIn {
        let r = plan.request
        for directory in [paths.stateDirectory, paths.configDirectory] {
            if try makeDirectory(directory, mode: 0o755) { undo.append { discardDirectory(directory) } }
        }
        let jailDirectory = paths.jail(r.name)
        // Kept data: STATE/NAME and what holds the tenant's files stay whatever happens; only
        // the root mount point and work/ this create makes are undone.
        let reuse = plan.kept != nil
        if !reuse { try makeJailDirectory(jailDirectory, disk: plan.disk, undo: &undo) }
        func makeOwn(_ path: String, _ mode: mode_t, _ undo: inout [() -> Void]) throws(ProvisionError) {
            if try makeDirectory(path, mode: mode), reuse { undo.append { removeTree(path) } }
        }
        let rootFD: FileDescriptor
        if let disk = plan.disk, disk.backend == .image {
            try makeOwn(paths.root(r.name), 0o755, &undo)
            rootFD = try openImageOverlay(base: plan.base, jailDirectory: jailDirectory, disk: disk, reuse: reuse)
        } else if r.copy {
            if !reuse { try HostAccounts.run("/bin/cp", ["--reflink=auto", "-a", "--", plan.base, paths.root(r.name)]) }
            do { rootFD = try openDirectoryPath(paths.root(r.name), followSymlinks: false) } catch { throw .system(error) }
        } else {
            // The merged root takes its mode from the upper directory's: as the base's root.
            let info: stat
            do throws(SystemError) {
                guard let found = try fileStatusFollowingLinks(plan.base) else { throw SystemError("stat", path: plan.base, errno: .noSuchFileOrDirectory) }
                info = found
            } catch { throw .system(error) }
            try makeOwn(paths.root(r.name), 0o755, &undo)
            if !reuse {
                _ = try makeDirectory(paths.upper(r.name), mode: info.st_mode & 0o7777, uid: info.st_uid, gid: info.st_gid)
            }
            try makeOwn(paths.work(r.name), 0o700, &undo)
            // The overlay's fsopen/fsconfig/fsmount are the point here: no face hides them.
            do {
                rootFD = FileDescriptor(rawValue: try syscall("overlay", path: paths.root(r.name)) {
                    cj_overlay_open(plan.base, paths.upper(r.name), paths.work(r.name))
                })
            } catch { throw .system(error) }
        }
        defer { closeDescriptor(rootFD.rawValue) }
        let tree = JailTree(root: rootFD, description: paths.root(r.name))
        if try !keptTreeHasUser(plan, tree: tree) {
            do { try writeJailUser(plan, into: tree) } catch { throw ProvisionError.from(error) }
        }

        // sshd's side first: the account exists only with the drop-in and its group in place.
        let dropIn = try SshdAccess.installDropIn(in: paths.sshdConfigDirectory)
        if case .installed(let path) = dropIn { undo.append { discardFile(path) } }
        if plan.makeTenantGroup {
            try HostAccounts.addSystemGroup(SshdAccess.tenantGroup)
            undo.append { undoing("the group \(SshdAccess.tenantGroup)") { () throws(ProvisionError) in try HostAccounts.deleteGroup(SshdAccess.tenantGroup) } }
        }
        let home = paths.home(r.name)
        if try makeDirectory(paths.homes, mode: 0o755) { undo.append { discardDirectory(paths.homes) } }
        // The home is the tenant's (0700), so that sshd's xauth can write ~/.Xauthority for
        // `ssh -X`; its .ssh and key are root's: the tenant's sessions run in the jail, no program
        // of the tenant's runs on the host, and the keys sshd accepts stay jaild's to write.
        _ = try makeDirectory(home, mode: 0o700, uid: plan.uid, gid: plan.gid)
        undo.append { removeTree(home) }
        if let key = plan.hostKey {
            _ = try makeDirectory(home + "/.ssh", mode: 0o755)
            try writeFile(home + "/.ssh/authorized_keys", key, mode: 0o644)
        }
        try AccountFiles.add(AccountFiles.Tenant(name: r.name, uid: plan.uid, gid: plan.gid, makeGroup: plan.makeHostGroup,
                                                 supplementaryGroup: SshdAccess.tenantGroup, home: home, shell: r.jailBinary))
        undo.append {
            undoing("the account \(r.name)") { () throws(ProvisionError) in
                try AccountFiles.remove(r.name, ownGroup: plan.makeHostGroup ? plan.gid : nil)
            }
        }
        if try HostAccounts.addShell(r.jailBinary) { undo.append { undoing("the shell \(r.jailBinary) in /etc/shells") { () throws(ProvisionError) in try HostAccounts.removeShell(r.jailBinary) } } }

        try writeFile(paths.config(r.name), configText(plan, paths: paths), mode: 0o644)
        if reuse {
            undo.append { discardFile(paths.config(r.name)) }
            do { try removeFile(KeptData.path(jailDirectory)) } catch { throw .system(error) }
        }
        return dropIn
    }

    static func writeJailUser(_ plan: Plan, into tree: JailTree) throws(SystemError) {
        let r = plan.request
        let user = JailUser(name: r.user, uid: plan.uid, gid: plan.gid, home: plan.home, shell: plan.shell)
        // The host account's name too, as an alias of the user (docs/ssh.md, "One name on both sides").
        let alias = r.name == r.user ? nil : user.alias(r.name)
        let today = Int(wallClockSeconds() / 86400)
        try tree.rewrite("/etc/passwd", defaultMode: 0o644) { text in alias.map { $0.passwd(user.passwd(text)) } ?? user.passwd(text) }
        try tree.rewrite("/etc/group", defaultMode: 0o644, user.group)
        try tree.rewrite("/etc/shadow", defaultMode: 0o600) { text in
            let own = user.shadow(text, today: today)
            return alias.map { $0.shadow(own, today: today) } ?? own
        }
        if try tree.status("/etc/gshadow") != nil, user.ownsGroup((try tree.text(at: "/etc/group")) ?? "") {
            try tree.rewrite("/etc/gshadow", defaultMode: 0o600, user.gshadow)
        }
        let newHome = try tree.status(plan.home) == nil
        try tree.makeDirectory(plan.home, mode: 0o755, uid: plan.uid, gid: plan.gid)
        if newHome { try tree.copySkeleton("/etc/skel", to: plan.home, uid: plan.uid, gid: plan.gid) }
        try tree.chownTree(plan.home, uid: plan.uid, gid: plan.gid)
        if let key = plan.key {
            try tree.makeDirectory(plan.home + "/.ssh", mode: 0o700, uid: plan.uid, gid: plan.gid)
            try tree.replaceFile(plan.home + "/.ssh/authorized_keys", key, mode: 0o600, uid: plan.uid, gid: plan.gid)
        }
        // `--hostname`: resolvable from the first start (init adds it too, for a name given
        // later, and logs that: Init/EtcHosts.swift).
        if let hostname = r.options.last(where: { $0.key == "hostname" })?.value {
            try tree.rewrite("/etc/hosts", defaultMode: 0o644) { text in
                text.isEmpty ? EtcHosts.fresh(for: hostname) : EtcHosts.adding(hostname, to: text) ?? text
            }
        }
    }

    /// Every option given, in the format of docs/config.md.
    static func configText(_ plan: Plan, paths: ProvisionPaths) -> String {
        let r = plan.request
        var lines = ["# \(paths.config(r.name)): written by jaild create; `jaild start \(r.name)` reads it.",
                     "uid = \(plan.uid)", "gid = \(plan.gid)", "name = \(r.user)", "root = \(paths.root(r.name))"]
        if r.copy { lines.append("# copied from \(plan.base)") } else { lines.append("base = \(plan.base)") }
        lines += diskConfigLines(r.options, disk: plan.disk)
        return lines.joined(separator: "\n") + "\n"
    }

    /// mkdir that reports whether it made the directory (false: it was there). The mode is
    /// set explicitly (the umask does not decide it).
    static func makeDirectory(_ path: String, mode: mode_t, uid: UInt32 = 0, gid: UInt32 = 0) throws(ProvisionError) -> Bool {
        do { try JailSystem.makeDirectory(path, mode: 0o700) } catch {
            if error.errno == .fileExists, Preflight.isDirectoryFollowing(path) { return false }
            throw .system(error)
        }
        do {
            try setOwner(path, uid: uid, gid: gid)
            try setMode(path, mode)
        } catch {
            discardDirectory(path)
            throw .system(error)
        }
        return true
    }

    /// A new file (never one that is there: O_EXCL) of `text` with exactly `mode`; one whose
    /// write failed is removed again.
    static func writeFile(_ path: String, _ text: String, mode: mode_t) throws(ProvisionError) {
        do throws(SystemError) {
            guard try JailSystem.writeFile(path, text: text, mode: mode, .exclusive) else {
                throw SystemError("create", path: path, errno: .fileExists)
            }
        } catch { throw .system(error) }
    }

    /// Whether anything is at `path` (a symlink too); a path that cannot be looked at is an error.
    static func exists(_ path: String) throws(ProvisionError) -> Bool {
        do { return try fileStatus(path) != nil } catch { throw .system(error) }
    }

    /// rm -rf that stays on one file system: a mount left beneath (a base, by mistake) is
    /// never descended into.
    @discardableResult
    static func removeTree(_ path: String) -> Bool {
        (try? runProgram("/bin/rm", ["-rf", "--one-file-system", "--", path]))?.status == 0
    }
}
