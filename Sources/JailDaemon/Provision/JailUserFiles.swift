import JailSystem

/// The jail user's lines in the jail's own /etc/passwd, /etc/group, /etc/shadow and
/// /etc/gshadow, as pure text edits (unit-tested): an entry of the same name that the base
/// brought is replaced, everything else is kept byte for byte.
struct JailUser: Equatable, Sendable {
    var name: String
    var uid: UInt32
    var gid: UInt32
    var home: String
    var shell: String

    struct Conflict: Error, Equatable, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    /// Refuses a base where another user already has the uid (sessions would be ambiguous), or
    /// where the name is a system account's (replacing root or daemon would break the base).
    /// `aliases`: other names this edit gives the same uid (the host account's name).
    func checkConflicts(passwd: String, aliases: [String] = []) throws(Conflict) {
        let names = [name] + aliases
        if let same = PasswdEntry.parseAll(passwd).first(where: { names.contains($0.name) && $0.uid < 1000 }) {
            throw Conflict(reason: "user '\(same.name)' is a system account (uid \(same.uid)) in the base's /etc/passwd")
        }
        if let other = PasswdEntry.parseAll(passwd).first(where: { $0.uid == uid && !names.contains($0.name) }) {
            throw Conflict(reason: "uid \(uid) belongs to user '\(other.name)' in the base's /etc/passwd")
        }
    }

    func passwd(_ text: String) -> String {
        replacing(text, "\(name):x:\(uid):\(gid):\(name):\(home):\(shell)")
    }

    /// The same user under another name (the host account's), after the user's own line, so
    /// `~NAME` expands inside (scp and rsync paths, Ansible) while uid → name stays USER.
    func alias(_ other: String) -> JailUser {
        JailUser(name: other, uid: uid, gid: gid, home: home, shell: shell)
    }

    /// A group named after the user with its gid, unless the base has a group with that gid
    /// already (then the user joins it as its primary group).
    func group(_ text: String) -> String {
        let others = GroupEntry.parseAll(text).filter { $0.name != name }
        if others.contains(where: { $0.gid == gid }) { return removing(text) }
        return replacing(text, "\(name):x:\(gid):")
    }

    func ownsGroup(_ groupText: String) -> Bool {
        !GroupEntry.parseAll(groupText).contains { $0.name != name && $0.gid == gid }
    }

    /// A locked password ("!"): the jail user logs in through `jail` (or a key), never a password.
    func shadow(_ text: String, today: Int) -> String {
        replacing(text, "\(name):!:\(today):0:99999:7:::")
    }

    func gshadow(_ text: String) -> String {
        replacing(text, "\(name):!::")
    }

    /// Drops the lines whose first field is the user's name and appends `line`.
    func replacing(_ text: String, _ line: String) -> String {
        removing(text) + line + "\n"
    }

    func removing(_ text: String) -> String {
        var kept = text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { $0.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) != name }
            .joined(separator: "\n")
        if !kept.isEmpty && !kept.hasSuffix("\n") { kept += "\n" }
        return kept
    }
}
