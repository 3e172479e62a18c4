import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// The host side of a tenant: its account (uid and gid the jail's, login shell `jail`) and
/// the line of /etc/shells that makes `jail` a valid login shell.
///
/// Accounts are made by Debian's useradd/groupadd/userdel/groupdel (package passwd), run as
/// programs: they take the same locks as every other tool that edits the account files
/// (lckpwdf and the .lock files), keep /etc/shadow and /etc/gshadow consistent and tell nscd.
/// Writing /etc/passwd ourselves would race with an administrator's `adduser` and get none of
/// that. /etc/shells has no tool of its own in every distribution and nothing locks it: it is
/// replaced as a whole (a new file renamed over it), so a reader never sees half of it.
enum HostAccounts {
    static let passwdFile = "/etc/passwd"
    static let groupFile = "/etc/group"
    static let shellsFile = "/etc/shells"

    static func users() -> [PasswdEntry] { PasswdEntry.parseAll((try? readText(passwdFile)) ?? "") }
    static func groups() -> [GroupEntry] { GroupEntry.parseAll((try? readText(groupFile)) ?? "") }

    static func run(_ program: String, _ arguments: [String]) throws(ProvisionError) {
        let result: ProgramResult
        do { result = try runProgram(program, arguments) } catch { throw ProvisionError.from(error) }
        guard result.status == 0 else {
            throw ProvisionError.refused("\((program as String).split(separator: "/").last ?? ""): \(result.reason)")
        }
    }

    static func addGroup(_ name: String, gid: UInt32) throws(ProvisionError) {
        try run("/usr/sbin/groupadd", ["-g", "\(gid)", name])
    }

    /// A group with a gid from the system range (groupadd -r), for a role rather than a person.
    static func addSystemGroup(_ name: String) throws(ProvisionError) {
        try run("/usr/sbin/groupadd", ["-r", name])
    }

    /// "*" as the password: none will ever match, but unlike "!" it is not "locked", which
    /// sshd (without PAM) would refuse even for a key. No /etc/subuid range: the account never
    /// runs a program on the host (its shell is `jail`), and the user-namespace ranges of the
    /// jails must not compete with 65,536 ids per tenant. `groups`: supplementary groups
    /// (userdel takes the account out of them).
    static func addUser(_ name: String, uid: UInt32, gid: UInt32, groups: [String], home: String,
                        shell: String) throws(ProvisionError) {
        try run("/usr/sbin/useradd", ["-u", "\(uid)", "-g", "\(gid)", "-G", groups.joined(separator: ","), "-M", "-d", home,
                                      "-s", shell, "-p", "*",
                                      "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", "-c", "jail \(name)", name])
    }

    static func deleteUser(_ name: String) throws(ProvisionError) {
        try run("/usr/sbin/userdel", [name])
    }

    static func deleteGroup(_ name: String) throws(ProvisionError) {
        try run("/usr/sbin/groupdel", [name])
    }

    static func shells() -> [String] {
        ((try? readText(shellsFile)) ?? "").split(separator: "\n").map { String($0.trimmingWhitespace()) }
    }

    /// Adds `shell` to /etc/shells; false if it was there already.
    static func addShell(_ shell: String) throws(ProvisionError) -> Bool {
        let text = (try? readText(shellsFile)) ?? ""
        if shells().contains(shell) { return false }
        try replaceShells(text + (text.isEmpty || text.hasSuffix("\n") ? "" : "\n") + shell + "\n")
        return true
    }

    static func removeShell(_ shell: String) throws(ProvisionError) {
        let text = (try? readText(shellsFile)) ?? ""
        let kept = text.split(separator: "\n", omittingEmptySubsequences: false).filter { String($0.trimmingWhitespace()) != shell }
        try replaceShells(kept.joined(separator: "\n"))
    }

    static func replaceShells(_ text: String) throws(ProvisionError) {
        var info = stat()
        let mode: mode_t = stat(shellsFile, &info) == 0 ? info.st_mode & 0o7777 : 0o644
        let temporary = shellsFile + ".jaild-new"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        if fd < 0 { throw ProvisionError.system(.last("create", path: temporary)) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        fchmod(fd, mode)
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0, rename(temporary, shellsFile) == 0 else {
            let error = SystemError.last("write", path: shellsFile)
            unlink(temporary)
            throw ProvisionError.from(error)
        }
    }
}

