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

    /// The host's accounts. A file that cannot be read is an error, never "no accounts": create
    /// would then take a name or uid that is in use.
    static func users() throws(ProvisionError) -> [PasswdEntry] { PasswdEntry.parseAll(try accountFile(passwdFile)) }
    static func groups() throws(ProvisionError) -> [GroupEntry] { GroupEntry.parseAll(try accountFile(groupFile)) }

    static func accountFile(_ path: String) throws(ProvisionError) -> String {
        do { return try readText(path) } catch { throw .system(error) }
    }

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

    /// /etc/shells as it is; "" when there is none (a host without one has no valid shells
    /// yet). Any other failure is thrown: read as empty, the rewrite would drop every line.
    static func shellsText() throws(ProvisionError) -> String {
        do { return try readTextIfPresent(shellsFile) ?? "" } catch { throw .system(error) }
    }

    static func shells() throws(ProvisionError) -> [String] {
        try shellsText().split(separator: "\n").map { String($0.trimmingWhitespace()) }
    }

    /// Adds `shell` to /etc/shells; false if it was there already.
    static func addShell(_ shell: String) throws(ProvisionError) -> Bool {
        let text = try shellsText()
        if text.split(separator: "\n").contains(where: { $0.trimmingWhitespace() == shell }) { return false }
        try replaceShells(text + (text.isEmpty || text.hasSuffix("\n") ? "" : "\n") + shell + "\n")
        return true
    }

    static func removeShell(_ shell: String) throws(ProvisionError) {
        let text = try shellsText()
        let kept = text.split(separator: "\n", omittingEmptySubsequences: false).filter { String($0.trimmingWhitespace()) != shell }
        try replaceShells(kept.joined(separator: "\n"))
    }

    /// Replaces /etc/shells whole, keeping its mode: a new file, on disk before it is renamed
    /// over the old, so a reader or a crash sees the old list or the new one.
    static func replaceShells(_ text: String) throws(ProvisionError) {
        do {
            let mode = try fileStatusFollowingLinks(shellsFile).map { $0.st_mode & 0o7777 } ?? 0o644
            try writeFileDurably(shellsFile, Array(text.utf8), mode: mode, temporary: shellsFile + ".jaild-new")
        } catch { throw .system(error) }
    }
}
