import JailSystem

#if canImport(Glibc)
import Glibc
#endif

/// What `jaild destroy NAME --keep-data` leaves beside the data, in STATE/NAME/kept-data
/// (0600 root): the ids, user, base and disk backend the data was made for. `jaild create NAME`
/// reuses the data only when the request matches it (another uid would own none of the
/// tenant's files, another base would show the upper layer over different files, and the
/// user-namespace range kept with the data is found by the jail's uid, gid and socket prefix);
/// a plain `jaild destroy NAME` reads it to give back that range once the config is gone.
struct KeptData: Equatable {
    static let fileName = "kept-data"

    enum Backend: String { case none, image, btrfs }

    var uid: UInt32
    var gid: UInt32
    var user: String
    /// The base's real path: the lower layer, or what `--copy` copied.
    var base: String
    var copy: Bool
    var backend: Backend
    var socketPrefix: String?

    static func path(_ jailDirectory: String) -> String { jailDirectory + "/" + fileName }

    var text: String {
        var lines = ["# written by jaild destroy --keep-data: jaild create reuses this data for the same uid, base and disk",
                     "uid = \(uid)", "gid = \(gid)", "user = \(user)", "base = \(base)", "copy = \(copy ? "yes" : "no")",
                     "disk-backend = \(backend.rawValue)"]
        if let socketPrefix { lines.append("socket-prefix = \(socketPrefix)") }
        return lines.joined(separator: "\n") + "\n"
    }

    static func parse(_ text: String) -> KeptData? {
        // A record that does not read is no record: the caller refuses it, naming the file.
        guard let entries = try? ConfigFile.entries(text, path: fileName) else { return nil }
        let fields = Dictionary(entries.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        guard let uid = fields["uid"].flatMap({ UInt32($0) }), let gid = fields["gid"].flatMap({ UInt32($0) }),
              let user = fields["user"], let base = fields["base"], let copy = fields["copy"],
              let backend = fields["disk-backend"].flatMap(Backend.init(rawValue:)) else { return nil }
        return KeptData(uid: uid, gid: gid, user: user, base: base, copy: copy == "yes", backend: backend,
                        socketPrefix: fields["socket-prefix"])
    }

    /// The record in `jailDirectory`; nil when there is none.
    static func load(jailDirectory: String) throws(ProvisionError) -> KeptData? {
        let path = path(jailDirectory)
        let text: String
        do {
            guard let found = try readTextIfPresent(path) else { return nil }
            text = found
        } catch { throw ProvisionError.cause("cannot read \(path)", error) }
        guard let kept = parse(text) else { throw ProvisionError.refused("\(path) is not a record of jaild destroy --keep-data") }
        return kept
    }

    /// The record of a jail's config at `jaild destroy --keep-data` (nil: the config does not
    /// say enough). `configText` is read for the `--copy` comment: a copy's config has no `base`.
    static func of(config entries: [ConfigFile.Entry], configText: String, jailDirectory: String) throws(ProvisionError) -> KeptData? {
        guard let uid = entries.value("uid").flatMap({ UInt32($0) }) else { return nil }
        let copied = configText.split(separator: "\n").first { $0.hasPrefix("# copied from ") }.map { String($0.dropFirst(14)) }
        guard let base = entries.value("base") ?? copied else { return nil }
        let backend: Backend = try Provision.exists(jailDirectory + "/" + DiskImage.fileName) ? .image
            : BtrfsQuota.isSubvolume(jailDirectory) ? .btrfs : .none
        return KeptData(uid: uid, gid: entries.value("gid").flatMap { UInt32($0) } ?? uid, user: entries.value("name") ?? "work",
                        base: base, copy: entries.value("base") == nil, backend: backend,
                        socketPrefix: entries.value("socket-prefix"))
    }

    func save(jailDirectory: String) throws(ProvisionError) {
        let path = Self.path(jailDirectory)
        do { try removeFile(path) } catch { throw .system(error) }  // an older record: this one replaces it
        try Provision.writeFile(path, text, mode: 0o600)
    }

    /// Why a create of `request` (its gid and base resolved) cannot take this data; nil if it can.
    func mismatch(_ r: JailCreation, gid: UInt32, base: String, name: String) -> String? {
        let prefix = r.options.last { $0.key == "socket-prefix" }?.value
        let data = "the data kept of jail \(name)"
        if r.uid != uid { return "\(data) is uid \(uid)'s (its user \(user)): give --uid \(uid), or jaild destroy \(name) --yes" }
        if gid != self.gid { return "\(data) is gid \(self.gid)'s: give --gid \(self.gid)" }
        if r.user != user { return "\(data) has the user \(user): give --user \(user)" }
        if base != self.base { return "\(data) was made on base \(self.base), not \(base)" }
        if r.copy != copy { return copy ? "\(data) is a copy of \(self.base): give --copy" : "\(data) is an overlay on \(self.base): leave out --copy" }
        if prefix != socketPrefix {
            return "\(data) has socket prefix \(socketPrefix ?? "(default)") (its id range is found by it), not \(prefix ?? "(default)")"
        }
        return nil
    }
}

extension Provision {
    /// The record of the data `jaild destroy --keep-data` left in STATE/NAME; nil when there
    /// is no STATE/NAME. A directory without a record (another's, or kept by an older jaild,
    /// whose base nothing says) is refused, as is a record whose data is gone.
    static func keptData(of name: String, paths: ProvisionPaths) throws(ProvisionError) -> KeptData? {
        let directory = paths.jail(name)
        guard try exists(directory) else { return nil }
        guard let kept = try KeptData.load(jailDirectory: directory) else {
            throw ProvisionError.refused("\(name) is taken: \(directory) exists (and holds no record of jaild destroy --keep-data)")
        }
        let holder = kept.backend == .image ? directory + "/" + DiskImage.fileName : kept.copy ? paths.root(name) : paths.upper(name)
        guard try exists(holder) else { throw ProvisionError.refused("the data kept of jail \(name) is gone: \(holder) does not exist") }
        if kept.backend == .btrfs && !BtrfsQuota.isSubvolume(directory) {
            throw ProvisionError.refused("the data kept of jail \(name) was a btrfs subvolume, and \(directory) is none")
        }
        return kept
    }

    /// Whether the kept tree already has the jail user with the plan's uid and gid: then create
    /// writes nothing into it. Its passwd, shadow (a password the tenant set), home and in-jail
    /// authorized_keys are the tenant's now, and rewriting them (create gives the whole home to
    /// the user, sets a locked password, replaces authorized_keys with --key) would clobber what
    /// the tenant changed. A tree whose user is gone gets it written as a new jail's would.
    static func keptTreeHasUser(_ plan: Plan, tree: JailTree) throws(ProvisionError) -> Bool {
        guard plan.kept != nil else { return false }
        let r = plan.request
        let passwd: String?
        do { passwd = try tree.text(at: "/etc/passwd") } catch { throw ProvisionError.from(error) }
        let entries = PasswdEntry.parseAll(passwd ?? "")
        if let own = entries.first(where: { $0.name == r.user }) {
            guard own.uid == plan.uid, own.gid == plan.gid else {
                throw ProvisionError.refused("the data kept of jail \(r.name) has its user \(r.user) as \(own.uid):\(own.gid), "
                    + "not \(plan.uid):\(plan.gid) (its /etc/passwd)")
            }
            return true
        }
        if let other = entries.first(where: { $0.uid == plan.uid }) {
            throw ProvisionError.refused("the data kept of jail \(r.name) gives uid \(plan.uid) to user \(other.name) (its /etc/passwd)")
        }
        return false
    }
}
