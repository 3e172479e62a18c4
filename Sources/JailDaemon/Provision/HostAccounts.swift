import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// The host side of a tenant: its account (uid and gid the jail's, login shell `jail`) and
/// the line of /etc/shells that makes `jail` a valid login shell.
///
/// The account and its group are written by jaild (AccountFiles), under the locks of the
/// shadow tools; the host group `jail`, made once, by groupadd -r and removed, on a failed first
/// create, by groupdel. /etc/shells has no tool of its own in every distribution and nothing
/// locks it: it is replaced as a whole (a new file renamed over it), so a reader never sees
/// half of it.
enum HostAccounts {
    static let passwdFile = "/etc/passwd"
    static let groupFile = "/etc/group"
    static let shellsFile = "/etc/shells"

    /// The host's accounts. A file that cannot be read is an error, never "no accounts": create
    /// would then take a name or uid that is in use.
    static func users() throws(ProvisionError) -> [PasswdEntry] { PasswdEntry.parseAll(try accountFile(passwdFile)) }
    static func groups() throws(ProvisionError) -> [GroupEntry] { GroupEntry.parseAll(try accountFile(groupFile)) }
    static func passwdText() throws(ProvisionError) -> AccountText { AccountText(try accountFile(passwdFile)) }
    static func groupText() throws(ProvisionError) -> AccountText { AccountText(try accountFile(groupFile)) }

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

    /// A group with a gid from the system range (groupadd -r), for a role rather than a person.
    static func addSystemGroup(_ name: String) throws(ProvisionError) {
        try run("/usr/sbin/groupadd", ["-r", name])
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
