import JailSystem

/// Who a session runs as: resolved from the jail's files at each session start.
public struct Account: Equatable, Sendable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]
    public var home: String
    public var shell: String

    public enum LookupError: Error, Equatable, CustomStringConvertible {
        case rootNotAllowed
        case unknownUser(UInt32)
        case nameMismatch(String, UInt32)

        public var description: String {
            switch self {
            case .rootNotAllowed: "uid 0 is not allowed: a jail for root would give away the whole jail"
            case .unknownUser(let uid): "no user with uid \(uid) in the jail's /etc/passwd"
            case .nameMismatch(let name, let uid): "user '\(name)' in the jail's /etc/passwd does not have uid \(uid)"
            }
        }
    }

    /// Finds the account for `configuration` in the jail's passwd and group text.
    public static func resolve(
        _ configuration: JailConfiguration, passwd: String, group: String
    ) throws(LookupError) -> Account {
        // Rootless with --map-root, uid 0 inside is the user who started jaild, nobody more.
        guard configuration.uid != 0 || configuration.mapRoot else { throw .rootNotAllowed }
        let entries = PasswdEntry.parseAll(passwd)
        let entry: PasswdEntry
        if let name = configuration.userName {
            guard let byName = entries.first(where: { $0.name == name }) else { throw .unknownUser(configuration.uid) }
            guard byName.uid == configuration.uid else { throw .nameMismatch(name, configuration.uid) }
            entry = byName
        } else {
            guard let byUID = entries.first(where: { $0.uid == configuration.uid }) else {
                throw .unknownUser(configuration.uid)
            }
            entry = byUID
        }
        let gid = configuration.gid ?? entry.gid
        var groups = [gid]
        for g in GroupEntry.parseAll(group) where g.members.contains(entry.name) && !groups.contains(g.gid) {
            groups.append(g.gid)
        }
        let shell = configuration.shell ?? (entry.shell.isEmpty ? "/bin/sh" : entry.shell)
        return Account(
            name: entry.name, uid: configuration.uid, gid: gid, groups: groups,
            home: entry.home.isEmpty ? "/" : entry.home, shell: shell)
    }
}

extension Account {
    /// Root inside the jail, for `jaild enter --root` (the helper checks the peer is host
    /// root first): the jail's uid-0 passwd entry, or plain defaults when it has none.
    public static func root(passwd: String) -> Account {
        let entry = PasswdEntry.parseAll(passwd).first { $0.uid == 0 }
        return Account(name: entry?.name ?? "root", uid: 0, gid: 0, groups: [0],
                       home: entry.map { $0.home.isEmpty ? "/" : $0.home } ?? "/root",
                       shell: entry.map { $0.shell.isEmpty ? "/bin/sh" : $0.shell } ?? "/bin/sh")
    }
}
