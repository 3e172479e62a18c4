/// passwd(5) and group(5) text parsed in Swift, for every process of Jail: glibc's NSS after
/// pivot_root could load the jail's own libnss modules into jaild, and jaild and jail are
/// static executables, in which getpwuid(3) would need the shared libraries of the very glibc
/// they were linked with at run time (its NSS modules are dlopen'ed).
public struct PasswdEntry: Equatable, Sendable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public var home: String
    public var shell: String

    /// Parses passwd(5) text; malformed lines and comments are skipped, as glibc does.
    public static func parseAll(_ text: String) -> [PasswdEntry] {
        var entries: [PasswdEntry] = []
        forEachRecord(text) { fields in
            guard fields.count >= 7, let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) else { return }
            entries.append(PasswdEntry(name: fields[0], uid: uid, gid: gid, home: fields[5], shell: fields[6]))
        }
        return entries
    }

    /// The home directory of `uid` in passwd(5) text: its first entry's, as getpwuid(3) finds
    /// it; nil when no entry has that uid or its home field is empty.
    public static func home(ofUID uid: UInt32, in passwd: String) -> String? {
        guard let entry = parseAll(passwd).first(where: { $0.uid == uid }), !entry.home.isEmpty else { return nil }
        return entry.home
    }

    /// The home directory of `uid` on this host, from /etc/passwd: where a caller without
    /// $HOME keeps its own files. Accounts of a network directory (LDAP, sssd) are not there;
    /// their sessions have $HOME, which callers read first. nil also when /etc/passwd cannot
    /// be read: a caller then has no home to offer, as with an unknown uid.
    public static func hostHome(ofUID uid: UInt32, passwdPath: String = "/etc/passwd") -> String? {
        guard let bytes = try? readFile(passwdPath) else { return nil }
        return home(ofUID: uid, in: String(decoding: bytes, as: UTF8.self))
    }
}

public struct GroupEntry: Equatable, Sendable {
    public var name: String
    public var gid: UInt32
    public var members: [String]

    public static func parseAll(_ text: String) -> [GroupEntry] {
        var entries: [GroupEntry] = []
        forEachRecord(text) { fields in
            guard fields.count >= 4, let gid = UInt32(fields[2]) else { return }
            entries.append(GroupEntry(name: fields[0], gid: gid, members: fields[3].split(separator: ",").map { String($0) }))
        }
        return entries
    }
}

/// The colon-separated fields of every line of passwd(5)/group(5) text that is neither empty
/// nor a comment, split on bytes: split by Character, a jail's passwd of a hundred users cost a
/// start a third of a millisecond each time it was read (preflight and init read it).
func forEachRecord(_ text: String, _ body: ([String]) -> Void) {
    var text = text
    text.withUTF8 { bytes in
        var fields: [String] = []
        ByteLines.forEach(in: bytes) { start, end in
            guard end > start, bytes[start] != UInt8(ascii: "#") else { return }
            fields.removeAll(keepingCapacity: true)
            ByteLines.forEachField(in: bytes, start, end, separator: UInt8(ascii: ":")) { fieldStart, fieldEnd in
                fields.append(ByteLines.text(bytes, fieldStart, fieldEnd))
            }
            body(fields)
        }
    }
}
