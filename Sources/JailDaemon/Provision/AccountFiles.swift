import JailSystem
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A tenant's host account and group written into /etc/passwd, /etc/shadow, /etc/group and
/// /etc/gshadow by jaild itself, as useradd/groupadd and userdel would write them, under the
/// same locks (ShadowLock: lckpwdf, then commonio's `FILE.lock` for each file), so that jaild
/// and the shadow tools, vipw or an administrator's adduser never edit them at once.
///
/// Why not useradd: it reads and rewrites all four files and looks every name up through NSS,
/// so with a line per tenant it costs more the more tenants there are — 8 ms for groupadd and
/// 28–40 ms for useradd at 2,000 tenants against 3 and 5–7 ms on a fresh host, and 70–98 ms for
/// userdel, which also walks /proc for the user's processes. Here an account is two lines
/// appended (passwd, shadow: one O_APPEND write and an fsync each) and the group file and
/// gshadow rewritten once (the member list of `jail` is in the middle), whatever the count.
/// What useradd does beyond the files is done too: the uid's stale lastlog and faillog records
/// are cleared, and nscd and sssd are told (when installed). The host group `jail` itself, made
/// once per host, is still groupadd's (`HostAccounts.addSystemGroup`), which picks a free
/// system gid.
enum AccountFiles {
    static let passwd = "/etc/passwd"
    static let shadow = "/etc/shadow"
    static let group = "/etc/group"
    static let gshadow = "/etc/gshadow"
    static let loginDefs = "/etc/login.defs"

    /// The four files, in the order the shadow tools lock them.
    static let all = [passwd, shadow, group, gshadow]

    struct Tenant {
        let name: String
        let uid: UInt32
        let gid: UInt32
        /// A group of the tenant's name and gid is made (false: `gid` is an existing group's).
        let makeGroup: Bool
        /// The group the account is added to (`jail`, sshd's Match), which must exist.
        let supplementaryGroup: String
        let home: String
        let shell: String
    }

    /// The account and (with `makeGroup`) its group; refused when another program took the
    /// name, the uid or the gid since `jaild create` checked them.
    static func add(_ tenant: Tenant) throws(ProvisionError) {
        let lock = try lockAll()
        defer { lock.release() }
        let files = try readAll()
        if let problem = conflict(tenant, files) { throw .refused(problem) }
        let lines = try newLines(tenant)
        // The group before the account that names its gid: a crash between leaves a group, never
        // an account without one. A write that fails puts back the files written before it.
        var groupText = files.group
        if tenant.makeGroup { groupText = AccountText(groupText.appending(lines.group)) }
        guard let withMember = groupText.addingMember(tenant.name, toGroup: tenant.supplementaryGroup, field: 3) else {
            throw .refused("the host group \(tenant.supplementaryGroup) is gone from \(group)")
        }
        var written: [(path: String, before: AccountText)] = []
        do throws(ProvisionError) {
            try replace(group, withMember)
            written.append((group, files.group))
            if var gshadowText = files.gshadow {
                if tenant.makeGroup { gshadowText = AccountText(gshadowText.appending(lines.gshadow)) }
                // A gshadow without the group's line (made by hand) keeps the membership in group(5) alone.
                try replace(gshadow, gshadowText.addingMember(tenant.name, toGroup: tenant.supplementaryGroup, field: 3) ?? gshadowText.bytes)
                written.append((gshadow, files.gshadow ?? gshadowText))
            }
            try append(passwd, lines.passwd, to: files.passwd)
            written.append((passwd, files.passwd))
            if let shadowText = files.shadow { try append(shadow, lines.shadow, to: shadowText) }
        } catch {
            for file in written.reversed() {
                do { try replace(file.path, file.before) } catch {
                    JailLogHandler.emitToTerminal("could not undo the account \(tenant.name) in \(file.path): \(error)")
                }
            }
            throw error
        }
        clearLoginRecords(of: tenant.uid)
        flushNameCaches()
    }

    /// The account `name` out of every file and every group's members; with `ownGroup`, the
    /// group of that gid too when it has the account's name and no other account has it as
    /// its group (as userdel does with USERGROUPS_ENAB). Nothing there is nothing to do.
    static func remove(_ name: String, ownGroup gid: UInt32?) throws(ProvisionError) {
        let lock = try lockAll()
        defer { lock.release() }
        let files = try readAll()
        let passwdText = AccountText(files.passwd.removing(name))
        var groupGone = false
        if let gid, let own = files.group.line(named: name), AccountText.field(2, of: own)?.elementsEqual(Array("\(gid)".utf8)) == true,
           passwdText.line(whereField: 3, is: "\(gid)") == nil {
            groupGone = true
        }
        func edited(_ text: AccountText, memberFields: [Int]) -> [UInt8] {
            text.removing(name, keepingLines: !groupGone, memberFields: memberFields)
        }
        let groupBytes = edited(files.group, memberFields: [3])
        if groupBytes != files.group.bytes { try replace(group, AccountText(groupBytes)) }
        if let gshadowText = files.gshadow {
            let bytes = edited(gshadowText, memberFields: [2, 3])
            if bytes != gshadowText.bytes { try replace(gshadow, AccountText(bytes)) }
        }
        if let shadowText = files.shadow {
            let bytes = shadowText.removing(name)
            if bytes != shadowText.bytes { try replace(shadow, AccountText(bytes)) }
        }
        if passwdText != files.passwd { try replace(passwd, passwdText) }
        flushNameCaches()
    }

    struct Files {
        let passwd: AccountText
        let group: AccountText
        /// nil: the host has no such file (no shadow passwords or groups).
        let shadow: AccountText?
        let gshadow: AccountText?
    }

    static func readAll() throws(ProvisionError) -> Files {
        func read(_ path: String) throws(ProvisionError) -> AccountText? {
            do { return try readFileIfPresent(path).map(AccountText.init) } catch { throw .system(error) }
        }
        guard let passwdText = try read(passwd) else { throw .refused("\(passwd) does not exist") }
        guard let groupText = try read(group) else { throw .refused("\(group) does not exist") }
        return Files(passwd: passwdText, group: groupText, shadow: try read(shadow), gshadow: try read(gshadow))
    }

    /// What another program made since the checks, in one line; nil when the tenant still fits.
    static func conflict(_ t: Tenant, _ files: Files) -> String? {
        if let other = AccountText.passwdEntry(files.passwd.line(named: t.name)) { return "\(t.name) is taken: host account \(other.name) exists" }
        if let other = AccountText.passwdEntry(files.passwd.line(whereField: 2, is: "\(t.uid)")) {
            return "uid \(t.uid) is in use by host account \(other.name)"
        }
        if files.shadow?.contains(name: t.name) == true { return "\(t.name) is taken: \(shadow) has a line for it" }
        if files.group.contains(name: t.name) { return "\(t.name) is taken: a host group of that name exists" }
        if files.gshadow?.contains(name: t.name) == true { return "\(t.name) is taken: \(gshadow) has a line for it" }
        let gidGroup = AccountText.groupEntry(files.group.line(whereField: 2, is: "\(t.gid)"))
        if t.makeGroup, let gidGroup { return "gid \(t.gid) is in use by host group \(gidGroup.name)" }
        if !t.makeGroup, gidGroup == nil { return "gid \(t.gid) has no host group any more" }
        return nil
    }

    /// The lines useradd and groupadd write for the tenant: "*" as the password (none will ever
    /// match, but unlike "!" it is not locked, which sshd without PAM would refuse even for a
    /// key); the password ages of login.defs, today as the last change.
    static func newLines(_ t: Tenant) throws(ProvisionError) -> (passwd: String, shadow: String, group: String, gshadow: String) {
        let defs: [UInt8]
        do { defs = try readFileIfPresent(loginDefs) ?? [] } catch { throw .system(error) }
        let ages = PasswordAges.parse(loginDefs: defs)
        let today = Int(wallClockSeconds() / 86400)
        return (passwd: "\(t.name):x:\(t.uid):\(t.gid):jail \(t.name):\(t.home):\(t.shell)",
                shadow: "\(t.name):*:\(today):\(ages.shadowFields):::",
                group: "\(t.name):x:\(t.gid):",
                gshadow: "\(t.name):!::")
    }

    static func lockAll() throws(ProvisionError) -> ShadowLock {
        do { return try ShadowLock.acquire(all, purpose: "write the host account") } catch { throw .from(error) }
    }

    static func append(_ path: String, _ line: String, to text: AccountText) throws(ProvisionError) {
        let appended = text.appending(line)
        let addition = Array(appended[text.bytes.count...])
        do {
            if try appendDurably(path, addition, expectedSize: text.bytes.count) { return }
            // Changed without the locks (or a symlink): the text read plus the line, written whole.
            try replaceFileKeepingOwner(path, appended, temporary: path + "+")
        } catch { throw .system(error) }
    }

    static func replace(_ path: String, _ text: AccountText) throws(ProvisionError) {
        try replace(path, text.bytes)
    }

    static func replace(_ path: String, _ bytes: [UInt8]) throws(ProvisionError) {
        do { try replaceFileKeepingOwner(path, bytes, temporary: path + "+") } catch { throw .system(error) }
    }

    /// The records of lastlog(8) and faillog(8) kept for `uid`, cleared as useradd clears them:
    /// an account that reuses the uid of one destroyed must not show its logins. One write at
    /// the uid's offset; a file that ends before it holds no record. A failure is said and the
    /// create goes on (useradd only warns too).
    static func clearLoginRecords(of uid: UInt32) {
        for (path, size) in [("/var/log/lastlog", 292), ("/var/log/faillog", 32)] {
            do throws(SystemError) {
                guard let fd = try openFileIfPresent(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC) else { continue }
                defer { closeDescriptor(fd.rawValue) }
                let offset = Int64(uid) * Int64(size)
                guard try fd.fileStatus().st_size >= offset + Int64(size) else { continue }
                try fd.writeBytes([UInt8](repeating: 0, count: size), at: offset, path: path)
            } catch {
                JailLogHandler.emitToTerminal("warning: cannot clear the record of uid \(uid): \(error)")
            }
        }
    }

    /// nscd and sssd keep passwd and group lookups for minutes: told as useradd tells them,
    /// when they are installed. A failure is said; the account is written all the same.
    static func flushNameCaches() {
        for (program, arguments) in [("/usr/sbin/nscd", ["-i", "passwd"]), ("/usr/sbin/nscd", ["-i", "group"]),
                                     ("/usr/sbin/sss_cache", ["-UG"])] {
            // Not installed (or not executable): nothing to tell.
            guard isAccessible(program, X_OK) else { continue }
            do {
                let result = try runProgram(program, arguments)
                if result.status != 0 { JailLogHandler.emitToTerminal("warning: \(program) \(arguments.joined(separator: " ")): \(result.reason)") }
            } catch {
                JailLogHandler.emitToTerminal("warning: \(program): \(error)")
            }
        }
    }
}

/// PASS_MIN_DAYS, PASS_MAX_DAYS and PASS_WARN_AGE of login.defs, as useradd puts them in a new
/// account's shadow line (a missing or negative value: an empty field).
struct PasswordAges: Equatable {
    var minimum: Int?
    var maximum: Int?
    var warning: Int?

    static func parse(loginDefs bytes: [UInt8]) -> PasswordAges {
        var ages = PasswordAges()
        for line in bytes.split(separator: UInt8(ascii: "\n")) where line.first == UInt8(ascii: "P") {
            let words = line.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
            guard words.count >= 2, let value = Int(String(decoding: words[1], as: UTF8.self)) else { continue }
            let kept = value >= 0 ? value : nil
            switch String(decoding: words[0], as: UTF8.self) {
            case "PASS_MIN_DAYS": ages.minimum = kept
            case "PASS_MAX_DAYS": ages.maximum = kept
            case "PASS_WARN_AGE": ages.warning = kept
            default: break
            }
        }
        return ages
    }

    /// shadow(5)'s fields 4–6.
    var shadowFields: String {
        [minimum, maximum, warning].map { $0.map(String.init) ?? "" }.joined(separator: ":")
    }
}
